"""Transfer quality: the shipped recipe against what one writes by hand, on folders of images.

    .venv/bin/python benchmarks/transfer.py ROOT [ROOT ...] [--recipe recipes/flowers.toml]
        [--variant timm/tf_efficientnet_lite1@240 ...] [--only probe,recipe,loop] [--out benchmarks/TRANSFER.md]

Each ROOT is an ImageFolder with ``train/`` and ``test/`` (no ``val/``: transferkit carves its
own); ``digits`` stands for scikit-learn's handwritten digits (the demo's data), written out as
such a folder. For every dataset, in one run on one machine, side by side (``transfer_cases.py``):
a scikit-learn logistic probe on the same backbone's features at its native preprocessing (the
default baseline) and at the recipe's, fastai's documented ``fine_tune``, the hand-written loop
(``--only ...,loop``: slow), and the recipe through ``transferkit finetune``, each with test top-1
and wall time; ``--variant`` adds recipe rows with other backbones. Every case runs in its own
process. Results go to ``--out`` as Markdown (and ``.json`` beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_case(case: str, root: Path, extra: list[str]) -> dict:
    command = [sys.executable, str(HERE / "transfer_cases.py"), case, str(root), *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"    {case} failed: {tail}", flush=True)
        return {"error": tail}
    result = json.loads(line[len("RESULT "):])
    print(f"    {case}: {json.dumps({k: v for k, v in result.items() if k not in ('case', 'curve', 'final')})}", flush=True)
    return result


def digits_folder(where: Path) -> Path:
    """The demo's data (transferkit's ``digits`` source, its own test split) as an ImageFolder."""
    from PIL import Image

    from transferkit.builtin.datasets import digits

    root = where / "digits"
    if root.is_dir():
        return root
    splits = digits(None, seed=0, val_fraction=0.0)
    for name, images in (("train", splits.train), ("test", splits.test)):
        for i in range(len(images)):
            folder = root / name / images.classes[images.targets[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images.load(i)).save(folder / f"{i:04d}.png")
    return root


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), {gpu}; torch {torch.__version__}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def _best(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _ended_with(final: dict) -> str:
    """How a run's final weights came about, in words (``summary["final"]``)."""
    if final.get("policy") == "ensemble":
        val = final.get("candidates") or {}
        shown = ", ".join(f"{n} {val[n]['val_top1']:.4f}" for n in ("probe", "finetuned", "ensemble") if n in val)
        weights = final.get("weights") or {}
        weighted = f", weights {weights['probe']:.3f} / {weights['finetuned']:.3f}" if weights else ""
        return f"the probe + fine-tuned ensemble (not chosen{weighted}" + (f"; validation top-1: {shown})" if shown else ")")
    return f"{final.get('chosen')} (alpha {final.get('alpha')}), chosen on {final.get('chosen_on', '?')}"


def report(rows: list[dict], args: argparse.Namespace, where: str, minutes: float) -> list[str]:
    recipe = Path(args.recipe).name
    lines = [
        "# Transfer benchmark",
        "",
        f"Machine: {where}. Command: `python benchmarks/transfer.py {' '.join(args.display_roots)}"
        f" --recipe {args.recipe} --only {args.only}{''.join(f' --variant {v}' for v in args.variant)}`"
        f" ({time.strftime('%Y-%m-%d')}, {minutes:.0f} min). Test top-1 on each folder's `test/`; wall time in seconds in"
        " brackets (a probe's includes computing its features).",
        "",
        "- **native probe**: scikit-learn `LogisticRegression` (C = 1 / C by 5-fold CV) on the backbone's features at its"
        " native pretrained preprocessing (timm's data config), as a user's own script computes them;",
        "- **recipe-transform probe**: the same (C by CV) on the features of the recipe's own 192-px evaluation transform;",
        "- **fastai**: `vision_learner(...).fine_tune(4)` as fastai's documentation teaches it, same weights and normalisation;",
        "- **loop**: the hand-written loop (Adam 1e-3, whole network, RandomResizedCrop + flip);",
        f"- **{recipe}**: `transferkit finetune {args.recipe} --set data.root=ROOT` (its phase 1, its fine-tuned model and"
        " the final model it ends with, `train.final`).",
        "",
        f"| dataset | classes | train / test | native probe C=1 | native probe CV | recipe-transform probe CV | fastai fine_tune | loop |"
        f" {recipe}: phase 1 | {recipe}: fine-tuned | {recipe}: final | final − native probe | final − fastai |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    gains = []
    for row in rows:
        n, p, fa, lo, r = (row.get(k, {}) for k in ("native_probe", "probe", "fastai", "loop", "recipe"))
        native = _best(n.get("C1_top1"), n.get("CV_top1"))
        margin = f"{r['top1'] - native:+.4f}" if "top1" in r and native is not None else "—"
        if "top1" in r and native is not None:
            gains.append(r["top1"] - native)
        over_fastai = f"{r['top1'] - fa['top1']:+.4f}" if "top1" in r and "top1" in fa else "—"
        cell = lambda d, k, s: f"{_pct(d.get(k))} ({d[s]:.0f} s)" if k in d else ("failed" if "error" in d else "—")  # noqa: E731
        lines.append(
            f"| {row['name']} | {n.get('classes', p.get('classes', '—'))} | {n.get('train_images', '—')} / {n.get('test_images', '—')} |"
            f" {cell(n, 'C1_top1', 'C1_seconds')} | {cell(n, 'CV_top1', 'CV_seconds')} | {cell(p, 'CV_top1', 'CV_seconds')} |"
            f" {cell(fa, 'top1', 'seconds')} | {cell(lo, 'top1', 'seconds')} | {_pct(r.get('extract_top1'))} |"
            f" {_pct(r.get('finetune_top1'))} |"
            f" {cell(r, 'top1', 'seconds')} | {margin} | {over_fastai} |"
        )
        for variant, vr in row.get("variants", {}).items():
            lines.append(f"| {row['name']}, {variant} | | | | | | | | {_pct(vr.get('extract_top1'))} | {_pct(vr.get('finetune_top1'))} |"
                         f" {cell(vr, 'top1', 'seconds')} | | |")
    if gains:
        lines += ["", f"Mean gain of the recipe over the better native probe (C = 1 or CV): {sum(gains) / len(gains):+.4f}"
                  f" over {len(gains)} folders; lowest {min(gains):+.4f}."]
    finals = [(row["name"], row["recipe"]) for row in rows if row.get("recipe", {}).get("final")]
    if finals:
        lines += ["", "What each run ended with, and the test ECE of its probabilities (raw -> calibrated):", ""]
        for name, r in finals:
            final, ece = r["final"], r.get("ece", {})
            tested = final.get("test_models")
            if ece.get("fitted_on"):
                calibrated = (f" ECE {_pct(ece.get('ece_before'))} -> {_pct(ece.get('ece_after'))} (fitted on {ece.get('n') or 0}"
                              f" {ece['fitted_on']} predictions"
                              + (f", T = {ece['temperature']:.3f}" if ece.get("temperature") is not None else "") + ")")
            else:
                calibrated = f" ECE {_pct(ece.get('raw'))} (not calibrated)"
            lines.append(f"- {name}: {_ended_with(final)};{calibrated}"
                         + (f"; test of each model: {json.dumps(tested, sort_keys=True)}" if tested else ""))
    lines += [
        "",
        *([f"Reused from `{Path(args.reuse).name}` (an earlier run of this script on the same folders, not rerun here):"
           f" {', '.join(sorted(args.reused))}."] if args.reused else []),
        "",
        "Every probe is fitted on all of `train/`; the recipe and fastai hold out their own validation split from it. Times"
        " on a shared 2-core CPU are indicative only; accuracies are what they are.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", metavar="ROOT")
    parser.add_argument("--recipe", default="recipes/flowers.toml")
    parser.add_argument("--variant", action="append", default=[], metavar="BACKBONE", help="extra recipe rows: BACKBONE[@SIZE], e.g. timm/tf_efficientnet_lite1@240")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides for every case")
    parser.add_argument("--only", default="native_probe,probe,fastai,recipe", help="comma-separated cases (also: loop)")
    parser.add_argument("--loop-epochs", type=int, default=6)
    parser.add_argument("--out", default=str(HERE / "TRANSFER.md"))
    parser.add_argument("--reuse", metavar="JSON", help="a previous run's TRANSFER.json: the cases not in --only are taken from"
                        " its row of the same folder (the report says which and from where)")
    args = parser.parse_args()
    earlier = {r["name"]: r for r in json.loads(Path(args.reuse).read_text())} if args.reuse else {}
    args.reused = set()
    cases = [c for c in args.only.split(",") if c]
    work = Path(tempfile.mkdtemp(prefix="transferkit-transfer-"))
    args.display_roots = [r if r == "digits" else (Path(r).name if Path(r).is_absolute() else r) for r in args.roots]
    started, load = time.time(), os.getloadavg()[0]
    rows = []
    for given in args.roots:
        root = digits_folder(work) if given == "digits" else Path(given).resolve()
        if not (root / "train").is_dir() or not (root / "test").is_dir():
            sys.exit(f"{given}: expected an ImageFolder with train/ and test/ class folders")
        print(f"{root.name}", flush=True)
        row: dict = {"name": root.name, "variants": {}}
        base = ["--recipe", args.recipe] + [x for s in args.set for x in ("--set", s)]
        for case in cases:
            tmp = work / root.name / case
            extra = base + ["--tmp", str(tmp)] + (["--epochs", str(args.loop_epochs)] if case == "loop" else [])
            if case in ("native_probe", "fastai", "loop"):  # baselines: the recipe's backbone only, none of its settings
                extra = ["--recipe", args.recipe, "--tmp", str(tmp)] + (["--epochs", str(args.loop_epochs)] if case == "loop" else [])
            row[case] = run_case(case, root, extra)
        for case, result in earlier.get(root.name, {}).items():
            if case in ("native_probe", "probe", "fastai", "loop", "recipe") and case not in row:
                row[case] = result
                args.reused.add(case)
        for variant in args.variant:
            tmp = work / root.name / variant.replace("/", "_")
            name, _, size = variant.partition("@")
            sets = ["--set", f"backbone.name={name}"] + (["--set", f"data.image_size={size}"] if size else [])
            row["variants"][variant] = run_case("recipe", root, base + sets + ["--tmp", str(tmp)])
        rows.append(row)
        where = f"{machine()}; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after"
        lines = report(rows, args, where, (time.time() - started) / 60)
        Path(args.out).write_text("\n".join(lines) + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
