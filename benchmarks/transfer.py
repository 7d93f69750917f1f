"""Transfer quality: the shipped recipe against what one writes by hand, on folders of images.

    .venv/bin/python benchmarks/transfer.py ROOT [ROOT ...] [--recipe recipes/flowers.toml]
        [--variant timm/tf_efficientnet_lite1@240 ...] [--only probe,recipe,loop] [--out benchmarks/TRANSFER.md]

Each ROOT is an ImageFolder with ``train/`` and ``test/`` (no ``val/``: transferkit carves its
own); ``digits`` stands for scikit-learn's handwritten digits (the demo's data), written out as
such a folder. For every dataset, in one run on one machine, side by side: (i) a scikit-learn
logistic probe on the same backbone's features (C = 1, and C by 5-fold cross-validation), (ii)
the recipe through ``transferkit finetune``, (iii) the hand-written loop (Adam, whole network),
each with test top-1 and wall time; ``--variant`` adds recipe rows with other backbones. Every
case runs in its own process. Results go to ``--out`` as Markdown (and ``.json`` beside it).
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


def report(rows: list[dict], args: argparse.Namespace, where: str, minutes: float) -> list[str]:
    recipe = Path(args.recipe).name
    lines = [
        "# Transfer benchmark",
        "",
        f"Machine: {where}. Command: `python benchmarks/transfer.py {' '.join(args.display_roots)}"
        f" --recipe {args.recipe}{''.join(f' --variant {v}' for v in args.variant)}` ({time.strftime('%Y-%m-%d')},"
        f" {minutes:.0f} min). Test top-1 on each folder's `test/`; wall time in seconds in brackets (the probe's"
        " includes computing the features).",
        "",
        f"| dataset | classes | train / test | probe C=1 | probe C by CV | hand-written loop | {recipe}: phase 1 | {recipe}: final | final − best baseline |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        p, r, lo = row.get("probe", {}), row.get("recipe", {}), row.get("loop", {})
        baselines = [v for v in (p.get("C1_top1"), p.get("CV_top1"), lo.get("top1")) if v is not None]
        margin = f"{r['top1'] - max(baselines):+.4f}" if "top1" in r and baselines else "—"
        cell = lambda d, k, s: f"{_pct(d.get(k))} ({d[s]:.0f} s)" if k in d else ("failed" if "error" in d else "—")  # noqa: E731
        lines.append(
            f"| {row['name']} | {p.get('classes', '—')} | {p.get('train_images', '—')} / {p.get('test_images', '—')} |"
            f" {cell(p, 'C1_top1', 'C1_seconds')} | {cell(p, 'CV_top1', 'CV_seconds')} | {cell(lo, 'top1', 'seconds')} |"
            f" {_pct(r.get('extract_top1'))} | {cell(r, 'top1', 'seconds')} | {margin} |"
        )
        for variant, vr in row.get("variants", {}).items():
            lines.append(f"| {row['name']}, {variant} | | | | | | {_pct(vr.get('extract_top1'))} | {cell(vr, 'top1', 'seconds')} | |")
    finals = [(row["name"], row["recipe"].get("final", {})) for row in rows if row.get("recipe", {}).get("final")]
    if finals:
        lines += ["", "Which weights each run ended with (chosen on its validation split):", ""]
        lines += [f"- {name}: {json.dumps(final, sort_keys=True)}" for name, final in finals]
    lines += [
        "",
        f"The probe is fitted on all of `train/`; the recipe holds out its own validation split from it. The loop runs"
        f" {args.loop_epochs} epochs. Times on a shared 2-core CPU are indicative only; accuracies are what they are.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", metavar="ROOT")
    parser.add_argument("--recipe", default="recipes/flowers.toml")
    parser.add_argument("--variant", action="append", default=[], metavar="BACKBONE", help="extra recipe rows: BACKBONE[@SIZE], e.g. timm/tf_efficientnet_lite1@240")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides for every case")
    parser.add_argument("--only", default="probe,recipe,loop", help="comma-separated cases")
    parser.add_argument("--loop-epochs", type=int, default=6)
    parser.add_argument("--out", default=str(HERE / "TRANSFER.md"))
    args = parser.parse_args()
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
            row[case] = run_case(case, root, extra)
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
