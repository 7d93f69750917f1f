"""Unlabelled images: the recipe with and without ``data.unlabeled``, most training labels hidden.

    .venv/bin/python benchmarks/unlabeled.py ROOT [ROOT ...] --out benchmarks/UNLABELED.md
        [--per-class 10] [--recipe recipes/flowers.toml] [--work DIR] [--set KEY=VALUE ...]

For every ImageFolder ROOT (``train/`` + ``test/``): ``--per-class`` training images of each class
(drawn with seed 0) are copied into ``WORK/<name>/labelled/train/<class>/`` with ROOT's ``test/``
beside them, and every other training image, without its class folder, into
``WORK/<name>/unlabelled/``. Then, in one run, each in its own process:
``transferkit finetune RECIPE --set data.root=labelled`` without and with
``--set data.unlabeled=unlabelled``: test top-1 (the final model's, and phase 1's), wall time,
and how many pseudo-labels the run used (and how many of those were right: the hidden labels
are known here, never to the run).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(root: Path, work: Path, per_class: int) -> tuple[Path, Path, dict[str, str]]:
    """The labelled folder, the unlabelled one, and each unlabelled file's hidden class."""
    base = work / root.name
    labelled, unlabelled = base / "labelled", base / "unlabelled"
    hidden: dict[str, str] = {}
    rng = random.Random(0)
    fresh = not labelled.is_dir()
    for cls in sorted(p.name for p in (root / "train").iterdir() if p.is_dir()):
        files = sorted(f for f in (root / "train" / cls).iterdir() if f.is_file())
        rng.shuffle(files)
        for i, f in enumerate(files):
            if i < per_class:
                target = labelled / "train" / cls / f.name
            else:
                target = unlabelled / f"{cls}__{f.name}"  # the class in the name is for scoring here, not read by the run
                hidden[str(target)] = cls
            if fresh:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
    if fresh:
        shutil.copytree(root / "test", labelled / "test")
    return labelled, unlabelled, hidden


def finetune(labelled: Path, unlabelled: Path | None, out: Path, args: argparse.Namespace) -> dict:
    run = out / ("with" if unlabelled else "without")
    if (run / "summary.json").is_file():
        summary = json.loads((run / "summary.json").read_text())
        return {"summary": summary, "seconds": summary.get("wall_seconds")}
    command = [sys.executable, "-m", "transferkit", "finetune", args.recipe, "--set", f"data.root={labelled}", "--output", str(run),
               *(["--set", f"data.unlabeled={unlabelled}"] if unlabelled else []), *[x for s in args.set for x in ("--set", s)]]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{labelled}: finetune failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return {"summary": json.loads((run / "summary.json").read_text()), "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--recipe", default=str(HERE.parent / "recipes" / "flowers.toml"))
    parser.add_argument("--work", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="transferkit-unlabeled-"))
    rows = []
    for root in map(Path, args.roots):
        labelled, unlabelled, hidden = build(root, work, args.per_class)
        row = {"folder": root.name, "labelled": sum(1 for f in (labelled / "train").rglob("*") if f.is_file()),
               "unlabelled": len(hidden), "test": sum(1 for f in (labelled / "test").rglob("*") if f.is_file())}
        for name, pool in (("without", None), ("with", unlabelled)):
            result = finetune(labelled, pool, work / root.name, args)
            s = result["summary"]
            row[name] = {"top1": s["test"]["top1"], "phase1_top1": s["phases"]["extract"].get("test_top1"),
                         "final": (s.get("final") or {}).get("chosen"), "seconds": result["seconds"],
                         "pseudo": s["phases"]["extract"].get("probe", {}).get("pseudo_labels")}
            print(f"{root.name} {name}: {json.dumps(row[name])}", flush=True)
        rows.append(row)
    if args.out:
        write(rows, args)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    lines = ["# Unlabelled images: the recipe with and without `data.unlabeled`", "",
             f"Machine: {platform.machine()}, CPU, 2 cores; `python benchmarks/unlabeled.py {' '.join(r['folder'] for r in rows)}"
             f" --per-class {args.per_class}`; recipe {Path(args.recipe).name}"
             f"{' ' + ' '.join('--set ' + s for s in args.set) if args.set else ''}; {time.strftime('%Y-%m-%d')}.", "",
             f"{args.per_class} labelled training images per class; every other training image of the folder is in the"
             " unlabelled folder, its label hidden from the run. Test top-1 on the folder's `test/`.", "",
             "| folder | labelled / unlabelled / test | without: phase 1 | without: final | with: phase 1 | with: final |"
             " pseudo-labels used (threshold) | final gain | time without / with |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["without"], r["with"]
        p = b["pseudo"] or {}
        lines.append(f"| {r['folder']} | {r['labelled']} / {r['unlabelled']} / {r['test']} | {a['phase1_top1']:.4f} | {a['top1']:.4f}"
                     f" ({a['final']}) | {b['phase1_top1']:.4f} | {b['top1']:.4f} ({b['final']}) | {p.get('used')} of"
                     f" {p.get('unlabeled_images')} ({p.get('threshold')}) | {b['top1'] - a['top1']:+.4f} |"
                     f" {a['seconds']:.0f} s / {b['seconds']:.0f} s |")
    gains = [r["with"]["top1"] - r["without"]["top1"] for r in rows]
    lines += ["", f"Mean gain of the final model: {sum(gains) / len(gains):+.4f} over {len(rows)} folders."]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
