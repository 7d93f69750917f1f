"""The judgements in the summary: each figure against its target, the engine's bottleneck by
name, what a resumed run can promise on a GPU, and stage 4 (the limit): each training figure as a
fraction of the card's dense bf16 peak, from the forward FLOPs per image counted in stage 2
(ResNet-50's forward is about 4.1 GMACs at 224 px; a training step is taken as 3x the forward)."""

from __future__ import annotations

from typing import Any, Callable

ENGINE_WITHIN = 0.85  # the engine within 15% of the raw loop
RESNET50_TRAIN, RESNET50_TRAIN_AIM, RESNET50_EXTRACT = 3000.0, 5000.0, 10000.0

RESUME_ON_GPU = (
    "What holds exactly, on a GPU too: the schedule (the same epochs and learning rates), the data order (seeded"
    " sampler), the resumed step and the RNG state, all restored from checkpoints/last.pt. What holds only"
    " within a tolerance on a GPU: weights, losses and accuracy. cuDNN's convolution kernels (the weight-gradient ones"
    " above all) and split-K or atomic reductions add in an order that changes from run to run, so two uninterrupted CUDA"
    " runs already differ in the last bits and training carries that apart; on the CPU (fp32, deterministic kernels) a"
    " resumed run's weights are bitwise equal to an uninterrupted run's (tests/engine/test_fault_injection.py)."
)


def verdict(value: float | None, target: float, dry: bool, card: str, aim: float | None = None) -> str:
    if dry:
        return "n/a (dry run)"
    if value is None:
        return "not measured"
    text = "meets" if value >= target else f"below: {value / target:.0%} of the target"
    if aim is not None and value >= target:
        text += " and the aim" if value >= aim else f"; {value / aim:.0%} of the aim"
    return text if "H100" in card else f"{text} (the target is an H100's; this card: {card})"


def _ok(parts: dict[str, Any], name: str) -> dict[str, Any]:
    part = parts.get(name) or {}
    return part if part.get("status") == "ok" else {}


def engine_ratio(parts: dict[str, Any], key: str) -> float | None:
    engine, raw = _ok(parts, f"3-{key}"), _ok(parts, f"2-{key}")
    if engine and raw:
        return engine["train_images_per_second"] / raw["train_images_per_second"]
    return None


def bottleneck(engine: dict[str, Any], raw: dict[str, Any] | None) -> str:
    """Why the engine trails the raw loop, from stage 2 and 3's own figures."""
    if not raw:
        return "unknown: no raw figure (stage 2) to compare with"
    raw_ips, ips = raw["train_images_per_second"], engine["train_images_per_second"]
    if ips >= ENGINE_WITHIN * raw_ips:
        return f"none: within {1 - ENGINE_WITHIN:.0%} of the raw loop"
    pipe = engine["pipeline"].get(str(engine["workers"]), {})
    pipe_ips = pipe.get("images_per_second")
    if pipe_ips is not None and pipe_ips < raw_ips:
        return (f"the input pipeline: {pipe_ips:,.0f} img/s from {engine['workers']} loader workers, under the raw loop's"
                f" {raw_ips:,.0f} (host-side augmentation and float32 normalisation per image)")
    first = pipe.get("first_batch_seconds")
    return ("the loop, not the data: the loader alone keeps up, so the one host read per step left (the loss the"
            " trainer's step callback gets as a float), the full checkpoint every epoch and the workers' start in each"
            " phase" + (f" ({first:.2f} s to the first batch)" if first is not None else "") + " cost the difference")


def target_rows(parts: dict[str, Any], card: str, fig: Callable[..., str]) -> list[tuple[str, str, str, str]]:
    dry = fig.dry  # type: ignore[attr-defined]
    rows = []
    for name, variant in (("2-resnet50", "eager"), ("2c-resnet50", "torch.compile")):
        ips = _ok(parts, name).get("train_images_per_second")
        rows.append((f"ResNet-50 training, raw loop, {variant}", fig(ips, "img/s"), ">= 3000 img/s on an H100 (aim: 5000)",
                     verdict(ips, RESNET50_TRAIN, dry, card, RESNET50_TRAIN_AIM)))
    for name, variant in (("2-resnet50", "eager"), ("2c-resnet50", "torch.compile")):
        ips = _ok(parts, name).get("extract_images_per_second")
        rows.append((f"ResNet-50 feature extraction, raw loop, {variant}", fig(ips, "img/s"), ">= 10000 img/s on an H100",
                     verdict(ips, RESNET50_EXTRACT, dry, card)))
    for key, title in (("resnet50", "ResNet-50"), ("lite0", "EfficientNet-Lite0")):
        ratio = engine_ratio(parts, key)
        engine = _ok(parts, f"3-{key}")
        why = "" if dry or not engine or ratio is None or ratio >= ENGINE_WITHIN else f"; {bottleneck(engine, _ok(parts, f'2-{key}'))}"
        rows.append((f"{title}: engine / raw loop (training img/s)", fig(ratio, digits=2), f">= {ENGINE_WITHIN} (within 15%)",
                     ("n/a (dry run)" if dry else "not measured" if ratio is None else
                      "meets" if ratio >= ENGINE_WITHIN else f"below{why}")))
    run = _ok(parts, "1-flowers")
    apart = run.get("images_apart") if run else None
    reason = (run or {}).get("cpu_reference", {}).get("status", "not measured (the flowers run did not finish)")
    rows.append(("flowers12 test accuracy: GPU run vs CPU run", fig(apart, "test image(s) apart") if apart is not None
                 else reason, "at most 1 test image apart",
                 "n/a (dry run)" if dry else "not measured" if apart is None else "meets" if apart <= 1 else "below"))
    return rows


# -- stage 4: the limit ----------------------------------------------------------------------
# (what the name must contain, what it must not, the entry's name, dense bf16 FLOP/s by datasheet)
PEAKS: tuple[tuple[tuple[str, ...], tuple[str, ...], str, float], ...] = (
    (("H200",), ("NVL",), "H200 (SXM)", 989e12),
    (("H100", "PCIe"), (), "H100 PCIe", 756e12),
    (("H100", "SXM"), (), "H100 SXM", 989e12),
    (("H100", "HBM3"), ("NVL", "PCIe"), "H100 SXM", 989e12),  # "NVIDIA H100 80GB HBM3" is the SXM part
)


def card_peak(card: str) -> tuple[str, float] | None:
    """(table entry, dense bf16 FLOP/s) for a device name, or None for a card not in the table."""
    for needed, excluded, entry, peak in PEAKS:
        if all(n in card for n in needed) and not any(x in card for x in excluded):
            return entry, peak
    return None


def training_figures(parts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every training images/s measured (raw eager, raw compiled, engine), with its FLOPs."""
    rows = []
    for key in ("resnet50", "lite0"):
        counted = parts.get(f"2-{key}", {})
        flops = counted.get("train_flops")
        for part, what, field in ((f"2-{key}", "raw loop", "train_images_per_second"),
                                  (f"2c-{key}", "raw loop, torch.compile", "train_images_per_second"),
                                  (f"3-{key}", "engine (transferkit finetune)", "train_images_per_second")):
            result = parts.get(part, {})
            if result.get("status") == "ok" and result.get(field):
                rows.append({"key": key, "what": what, "images_per_second": result[field], "train_flops": flops,
                             "forward_flops": counted.get("forward_flops")})
    return rows


def limit(parts: dict[str, dict[str, Any]], card: str) -> dict[str, Any]:
    """Achieved FLOP/s per training figure, and its fraction of the card's peak where known."""
    peak = card_peak(card)
    rows = []
    for row in training_figures(parts):
        achieved = row["images_per_second"] * row["train_flops"] if row["train_flops"] else None
        rows.append({**row, "achieved_flops": achieved,
                     "fraction": achieved / peak[1] if achieved and peak else None})
    return {"card": card, "entry": peak[0] if peak else None, "peak_flops": peak[1] if peak else None, "rows": rows}
