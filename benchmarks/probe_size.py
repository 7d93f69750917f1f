"""At what size phase 1's probe should read the frozen backbone: its pretrained size against 8/7 of
it (FixRes, Touvron et al. 2019: random-resized-crop training shows objects larger than a centre
crop of the same size, so a frozen network reads test images best a little above its training
size), and against the whole image uncropped, on folders of images.

    .venv/bin/python benchmarks/probe_size.py ROOT [ROOT ...] [--backbone timm/tf_efficientnet_lite0]
        [--sizes 224/0.875,224/1.0,256/0.875,256/1.0] [--out benchmarks/PROBE_SIZE.md]

Each ROOT is an ImageFolder with ``train/`` and ``test/``. For each SIZE/CROP_PCT, features are
computed with timm's own preprocessing at that size and crop (``224/0.875`` is
``tf_efficientnet_lite0``'s native one), read as the recipe's head reads them
(``backbone.readout = "auto"``: pooled + the last two stages' averages); each cell is
transferkit's phase-1 probe (``fit_probe``: C by 5-fold cross-validation, hard labels) fitted on
all of ``train/`` and scored on ``test/``. Results go to ``--out`` (and ``.json`` beside it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from readout import features, score

HERE = Path(__file__).resolve().parent
READOUT_STAGES = 2  # backbone.readout = "auto" on a timm network: pooled + the last two stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", metavar="ROOT")
    parser.add_argument("--backbone", default="timm/tf_efficientnet_lite0")
    parser.add_argument("--sizes", default="224/0.875,224/1.0,256/0.875,256/1.0", help="comma-separated SIZE/CROP_PCT")
    parser.add_argument("--out", default=str(HERE / "PROBE_SIZE.md"))
    args = parser.parse_args()
    sizes = [(int(s.split("/")[0]), float(s.split("/")[1])) for s in args.sizes.split(",")]
    rows = []
    for given in args.roots:
        root = Path(given).resolve()
        row: dict = {"name": root.name, "top1": {}, "seconds": {}}
        for size, crop in sizes:
            started = time.perf_counter()
            feats = features(args.backbone, root, size, crop)
            row["top1"][f"{size}/{crop}"] = score(feats, READOUT_STAGES)
            row["seconds"][f"{size}/{crop}"] = time.perf_counter() - started
        row.update(train=len(feats["train"][1]), test=len(feats["test"][1]), classes=int(feats["train"][1].max()) + 1)
        rows.append(row)
        print(row["name"], {k: round(v, 4) for k, v in row["top1"].items()}, flush=True)
        write(rows, [f"{s}/{c}" for s, c in sizes], args)


def write(rows: list[dict], keys: list[str], args: argparse.Namespace) -> None:
    base = keys[0]
    lines = [
        "# Probe size: at what size phase 1 reads the frozen backbone", "",
        f"`python benchmarks/probe_size.py {' '.join(r['name'] for r in rows)} --backbone {args.backbone} --sizes {args.sizes}`"
        f" ({time.strftime('%Y-%m-%d')}): transferkit's probe (C by 5-fold CV, the head's readout: pooled + the last"
        f" {READOUT_STAGES} stages) on all of `train/`, test top-1 on `test/`; columns: features at timm's preprocessing with"
        " that size / crop_pct.", "",
        "| dataset | classes | train / test | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for r in rows:
        cells = " | ".join(f"{r['top1'][k]:.4f}" for k in keys)
        lines.append(f"| {r['name']} | {r['classes']} | {r['train']} / {r['test']} | {cells} |")
    means = {k: float(np.mean([r["top1"][k] for r in rows])) for k in keys}
    lines.append("| **mean** | | | " + " | ".join(f"**{means[k]:.4f}**" for k in keys) + " |")
    lines += ["", f"Gain over {base}, per folder (images; points): " + "; ".join(
        f"{k}: " + ", ".join(f"{round((r['top1'][k] - r['top1'][base]) * r['test']):+d}" for r in rows)
        + f" (mean {100 * (means[k] - means[base]):+.2f})" for k in keys[1:])]
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
