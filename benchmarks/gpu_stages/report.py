"""The Markdown summary: the card and software, each part's status, every figure beside its
target, one section per stage. Pure formatting over the results (no torch)."""

from __future__ import annotations

from typing import Any

from .common import BACKBONE_TITLES, DRY_LABEL
from .plan import PARTS
from .verdicts import RESUME_ON_GPU, bottleneck, limit, target_rows


class Figure:
    """Numbers as the summary writes them; in a dry run each carries the dry-run label."""

    def __init__(self, dry: bool) -> None:
        self.dry = dry

    def __call__(self, value: float | None, unit: str = "", digits: int = 0) -> str:
        if value is None:
            return "not measured"
        text = f"{value:,.{digits}f}" + (f" {unit}" if unit else "")
        return f"{text} ({DRY_LABEL})" if self.dry else text


def status(parts: dict[str, Any], name: str) -> str:
    part = parts.get(name)
    if part is None:
        return "not run"
    if part["status"] == "ok":
        return "ok" + (f" (from {part['from']})" if part.get("from") else "")
    return f"{part['status']}: {part.get('error', '')}"


def ok(parts: dict[str, Any], name: str) -> dict[str, Any] | None:
    part = parts.get(name)
    return part if part and part.get("status") == "ok" else None


def render(results: dict[str, Any]) -> str:
    s, m, parts = results["settings"], results.get("machine") or {}, results.get("parts", {})
    fig = Figure(s["dry"])
    card = m.get("card", "unknown (no part reported the machine)")
    lines = [f"# transferkit on the GPU: {card}" if not s["dry"] else f"# transferkit GPU benchmark, dry run on {card}", ""]
    if s["dry"]:
        lines += [f"> **{DRY_LABEL}.** `--dry` runs every stage at toy sizes to exercise the code paths; no figure"
                  " below says anything about a GPU.", ""]
    lines += [
        f"- Card: {card}" + (f" (compute capability {m['sm']}, {m['gpu_memory_gib']} GiB, {m['multiprocessors']} SMs)" if "sm" in m else "")
        + f"; torch {m.get('torch', '?')}, CUDA {m.get('cuda', '?')}, cuDNN {m.get('cudnn', '?')}; Python {m.get('python', '?')};"
        f" {m.get('cpu_cores', '?')} CPU cores; {m.get('date', '?')}.",
        f"- Command: `{results.get('command', '')}`; wall {results.get('wall_s', 0):.0f} s of a {results.get('budget_s', 0):.0f} s budget.",
        f"- Sizes: stages 2-3 at {s['image_size']} px, batch {s['batch']}, {s['warmup_steps']} warm-up + {s['timed_steps']} timed"
        f" steps, torch.compile backend `{s['compile_backend']}`; stage 3 on flowers12's training images x{s['engine_copies']},"
        f" {s['engine_epochs']} finetune epoch(s), {s['engine_workers']} loader worker(s).",
    ]
    if results.get("previous"):
        lines.append(f"- Parts marked 'from' come from an earlier run's results ({results['previous']}).")
    lines += ["", "## Summary", "", "| part | what | status | seconds |", "|---|---|---|---|"]
    for part in PARTS:
        seconds = parts.get(part.name, {}).get("seconds")
        lines.append(f"| {part.name} | {part.title} | {status(parts, part.name)} | {f'{seconds:.1f}' if seconds else '-'} |")
    lines += ["", "### Against the targets", "", "| figure | measured | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in target_rows(parts, card, fig)]
    lines += stage1(parts, fig) + stage2(parts, fig) + stage3(parts, fig) + stage4(parts, card, fig)
    return "\n".join(lines) + "\n"


def stage1(parts: dict[str, Any], fig: Figure) -> list[str]:
    lines = ["", "## 1. Correctness on CUDA", ""]
    run = ok(parts, "1-flowers")
    if run:
        ref = run["cpu_reference"]
        cpu = (f"CPU run: {fig(ref['test_top1'], digits=4)} ({ref.get('file')}, {ref.get('machine', '?')}, {ref.get('date', '?')});"
               f" {fig(run.get('images_apart'), 'test image(s)')} apart (target: at most 1)") if ref["status"] == "ok" else f"CPU figure: {ref['status']}"
        lines.append(f"- recipes/flowers.toml on {run['device']}: test accuracy {fig(run['test_top1'], digits=4)}"
                     f" ({run['test_correct']}/{run['test_n']}); {cpu}. Training {fig(sum(run['phase_seconds'].values()), 's', 1)},"
                     f" wall {fig(run['wall_seconds'], 's', 1)}. Overrides: `{run['overrides']}`.")
    else:
        lines.append(f"- flowers recipe: {status(parts, '1-flowers')}")
    fp16 = ok(parts, "1-fp16")
    if fp16:
        scale = fig(fp16["loss_scale"]) if fp16["loss_scale"] is not None else "none (no GradScaler: this device runs fp32)"
        lines.append(f"- One extract + one finetune epoch with `train.amp = \"fp16\"` on {fp16['device']}: GradScaler's scale at the end"
                     f" {scale}; last train loss {fig(fp16['train_loss'], digits=4)}, {fig(fp16['images_per_second'], 'img/s')},"
                     f" test accuracy {fig(fp16['test_top1'], digits=4)}.")
    else:
        lines.append(f"- fp16 + GradScaler: {status(parts, '1-fp16')}")
    cut = ok(parts, "1-resume")
    if cut:
        at = cut["killed_at"]
        partial = cut["partial_epochs"]
        lines += [
            f"- SIGKILL (exit {cut['killed_returncode']}) of a second run of the same recipe; its last checkpoint was {at['phase']}"
            f" epoch {at['epoch'] + 1} after step {at['step']}; `--resume` finished it. Against the uninterrupted run: schedule"
            f" (phase, epoch and base LR of all {cut['epochs']} epochs) equal: **{'yes' if cut['schedule_equal'] else 'NO'}**;"
            f" weights bitwise equal: **{'yes' if cut['weights_bitwise_equal'] else 'no'}**, max abs difference"
            f" {fig(cut['weights_max_abs_diff'], digits=6)}; train loss max difference over whole epochs"
            f" {fig(cut['train_loss_max_abs_diff'], digits=6)}; test accuracy {fig(cut['test_top1'][0], digits=4)}"
            f" vs {fig(cut['test_top1'][1], digits=4)} ({fig(cut['test_images_apart'], 'image(s)')} apart)."
            + (f" metrics.jsonl's record of the resumed epoch counts only the images after the resume ({'; '.join(partial)}),"
               " so its loss, accuracy and images/s cover that part alone." if partial else ""),
            f"  {RESUME_ON_GPU}",
        ]
    else:
        lines.append(f"- kill and --resume: {status(parts, '1-resume')}")
    ev = ok(parts, "1-eval-export")
    if ev:
        lines.append(f"- `transferkit evaluate` (loads the run on the CPU, fp32): top-1 {fig(ev['evaluate_top1'], digits=4)} on {ev['evaluate_n']}"
                     f" images, against {fig(ev['training_test_top1'], digits=4)} measured during training on the device."
                     f" `export --format onnx`: {fig(ev['onnx_mb'], 'MB', 1)}, max abs logit difference to PyTorch"
                     f" {fig(ev['onnx_max_abs_diff'], digits=7)} (tolerance {ev['onnx_tolerance']:g}), top-1 agreement"
                     f" {fig(ev['onnx_top1_agreement'], digits=3)}.")
    else:
        lines.append(f"- evaluate + export: {status(parts, '1-eval-export')}")
    return lines


def stage2(parts: dict[str, Any], fig: Figure) -> list[str]:
    lines = ["", "## 2. Raw throughput", "",
             "Random batches already on the device, the engine's head, optimizer (AdamW) and runtime; BatchNorm in training mode."
             " First steps (compilation included) are timed apart; the device is synchronised around each timed region.", "",
             "| backbone | variant | runtime | training img/s | first steps | peak GiB | extraction img/s | first steps | peak GiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, title in BACKBONE_TITLES.items():
        for name, variant in ((f"2-{key}", "eager"), (f"2c-{key}", "torch.compile")):
            r = ok(parts, name)
            if not r:
                lines.append(f"| {title} | {variant} | {status(parts, name)} | | | | | | |")
                continue
            variant += f" ({r['compile_backend']})" if r.get("compile_backend") else ""
            lines.append(f"| {title} (`{r['backbone']}`) | {variant} | {r['runtime']} | {fig(r['train_images_per_second'])}"
                         f" | {fig(r['train_warmup_seconds'], 's', 1)} | {fig(r['train_peak_gib'], digits=1)}"
                         f" | {fig(r['extract_images_per_second'])} | {fig(r['extract_warmup_seconds'], 's', 1)}"
                         f" | {fig(r['extract_peak_gib'], digits=1)} |")
    return lines


def stage3(parts: dict[str, Any], fig: Figure) -> list[str]:
    lines = ["", "## 3. The engine", "",
             "`transferkit finetune` (in-process `transferkit.cli.main`): decode-once cache, pinned memory, metrics.jsonl and"
             " checkpoints on, `bn = \"train\"` to match stage 2. Engine images/s: metrics.jsonl's finetune epochs after the first"
             " (median). Input pipeline: the Trainer's own loader plus the copy to the device, no model.", "",
             "| backbone | engine img/s | raw img/s | engine / raw | per epoch | feature cache img/s (raw extraction) | input pipeline img/s (first batch) | bottleneck |",
             "|---|---|---|---|---|---|---|---|"]
    for key, title in BACKBONE_TITLES.items():
        e, raw = ok(parts, f"3-{key}"), ok(parts, f"2-{key}")
        if not e:
            lines.append(f"| {title} | {status(parts, f'3-{key}')} | | | | | | |")
            continue
        raw_ips = raw["train_images_per_second"] if raw else None
        ratio = e["train_images_per_second"] / raw_ips if raw_ips else None
        pipe = "; ".join(f"{w} worker(s): {fig(p['images_per_second'])} ({fig(p['first_batch_seconds'], 's', 2)})"
                         for w, p in e["pipeline"].items())
        lines.append(f"| {title} ({e['train_images']} images, batch {e['batch']}) | {fig(e['train_images_per_second'])}"
                     f" | {fig(raw_ips)} | {fig(ratio, digits=2)} | {', '.join(fig(x) for x in e['epoch_images_per_second'])}"
                     f" | {fig(e['feature_cache_images_per_second'])} ({fig(raw['extract_images_per_second']) if raw else 'not measured'})"
                     f" | {pipe} | {'n/a (dry run)' if fig.dry else bottleneck(e, raw)} |")
    return lines


def stage4(parts: dict[str, Any], card: str, fig: Figure) -> list[str]:
    result = limit(parts, card)
    entry = (f"table entry **{result['entry']}**, dense bf16 {result['peak_flops'] / 1e12:.0f} TFLOP/s (datasheet)"
             if result["entry"] else f"**unknown card** ({card}): no peak in the table (H100 SXM, H100 PCIe, H200), so no fraction")
    lines = ["", "## 4. The limit", "",
             f"Peak: {entry}. FLOPs per image: the forward's convolutions and matrix products counted by"
             " `torch.utils.flop_counter` at the stage's size (ResNet-50's forward is about 4.1 GMACs = 8.2 GFLOP at"
             " 224 px), a training step taken as 3x the forward.", "",
             "| backbone | figure | img/s | GFLOP per image (forward / training step) | achieved TFLOP/s | fraction of peak |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        per_image = (f"{fig(row['forward_flops'] / 1e9, digits=2)} / {fig(row['train_flops'] / 1e9, digits=2)}"
                     if row["train_flops"] else "not counted")
        achieved = fig(row["achieved_flops"] / 1e12, digits=1) if row["achieved_flops"] else "not measured"
        fraction = fig(100 * row["fraction"], "%", 1) if row["fraction"] is not None else "n/a"
        lines.append(f"| {BACKBONE_TITLES[row['key']]} | {row['what']} | {fig(row['images_per_second'])} | {per_image}"
                     f" | {achieved} | {fraction} |")
    if not result["rows"]:
        lines.append("| - | no training figure was measured | | | | |")
    return lines
