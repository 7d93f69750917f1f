"""How phase 1's probe should scale the features it reads: each feature by its own standard
deviation (scikit-learn's ``StandardScaler``), each block of the readout as a whole (the pooled
features, each stage's averages: within a block the features keep their relative scale, as a probe
on raw features does), or whichever of the two cross-validation prefers (the probe's default).

    .venv/bin/python benchmarks/probe_scaling.py ROOT [ROOT ...] [--backbone timm/tf_efficientnet_lite0]
        [--size 256/0.875] [--cache DIR] [--out benchmarks/PROBE_SCALING.md]

Each ROOT is an ImageFolder with ``train/`` and ``test/``. Features are computed once per folder
with timm's preprocessing at ``--size`` (SIZE/CROP_PCT; 256/0.875 is where phase 1 reads
``tf_efficientnet_lite0``: ``preprocessing.probe_image_size``) and read as the recipe's head reads
them (``backbone.readout = "auto"``: pooled + the last two stages' averages); ``--cache`` keeps
them between runs. Each cell is transferkit's phase-1 probe (``fit_probe``, C by 5-fold CV) fitted
on all of ``train/`` and scored on ``test/``. Results go to ``--out`` (and ``.json`` beside it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from readout import features, readout

HERE = Path(__file__).resolve().parent
READOUT_STAGES = 2  # backbone.readout = "auto" on a timm network: pooled + the last two stages
COLUMNS = {"feature": ("feature",), "block": ("block",), "chosen by CV": ("feature", "block")}


def cached_features(backbone: str, root: Path, size: int, crop: float, cache: str | None) -> dict:
    path = Path(cache) / f"{root.name}_{size}_{crop}.pt" if cache else None
    if path is not None and path.exists():
        return torch.load(path)
    feats = features(backbone, root, size, crop)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(feats, path)
    return feats


def score(feats: dict, scalings: tuple[str, ...]) -> dict:
    """Test top-1 of the probe (C by CV) on the readout, with the scalings cross-validation may choose from."""
    from transferkit.engine.training.probe import fit_probe

    parts = feats["train"][0]
    blocks = [parts[0].shape[1], *(p.shape[1] for p in parts[1:][-READOUT_STAGES:])]
    y, y_test = feats["train"][1], feats["test"][1]
    fit = fit_probe(readout(feats, "train", READOUT_STAGES), y, int(y.max()) + 1, blocks=blocks, scalings=scalings)
    logits = readout(feats, "test", READOUT_STAGES) @ fit.weight.T + fit.bias
    return {"top1": float((logits.argmax(1) == y_test).float().mean()), "scaling": fit.scaling, "C": fit.C,
            "cv_log_loss": fit.cv_scaling_log_loss, "seconds": fit.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", metavar="ROOT")
    parser.add_argument("--backbone", default="timm/tf_efficientnet_lite0")
    parser.add_argument("--size", default="256/0.875", help="SIZE/CROP_PCT of the features")
    parser.add_argument("--cache", default=None, help="a folder that keeps each folder's features between runs")
    parser.add_argument("--out", default=str(HERE / "PROBE_SCALING.md"))
    args = parser.parse_args()
    size, crop = int(args.size.split("/")[0]), float(args.size.split("/")[1])
    rows = []
    for given in args.roots:
        root = Path(given).resolve()
        feats = cached_features(args.backbone, root, size, crop, args.cache)
        row = {"name": root.name, "train": len(feats["train"][1]), "test": len(feats["test"][1]),
               "classes": int(feats["train"][1].max()) + 1, **{k: score(feats, s) for k, s in COLUMNS.items()}}
        rows.append(row)
        print(row["name"], {k: round(row[k]["top1"], 4) for k in COLUMNS}, row["chosen by CV"]["scaling"], flush=True)
        write(rows, args)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    keys = list(COLUMNS)
    lines = [
        "# Probe scaling: how phase 1 scales the features it reads", "",
        f"`python benchmarks/probe_scaling.py {' '.join(r['name'] for r in rows)} --backbone {args.backbone} --size {args.size}`"
        f" ({time.strftime('%Y-%m-%d')}): transferkit's probe (C by 5-fold CV, the head's readout: pooled + the last"
        f" {READOUT_STAGES} stages) on all of `train/`, test top-1 on `test/`. Columns: every feature scaled by its own"
        " standard deviation; each readout block by the root-mean-square of its features' deviations; the one with the"
        " lower cross-validated log-loss (the probe's default; which one, and both log-losses). The folders are held out:"
        " built from public repositories (seed-0 samples), not committed, nothing tuned on them; flowers12 is"
        " `../shared/data/flowers12`.", "",
        "| dataset | classes | train / test | " + " | ".join(keys) + " | CV chose | CV log-loss feature / block |",
        "|---|---|---|" + "---|" * len(keys) + "---|---|",
    ]
    for r in rows:
        cv = r["chosen by CV"]["cv_log_loss"]
        cells = " | ".join(f"{r[k]['top1']:.4f}" for k in keys)
        lines.append(f"| {r['name']} | {r['classes']} | {r['train']} / {r['test']} | {cells} | {r['chosen by CV']['scaling']}"
                     f" | {cv.get('feature', float('nan')):.4f} / {cv.get('block', float('nan')):.4f} |")
    means = {k: float(np.mean([r[k]["top1"] for r in rows])) for k in keys}
    lines.append("| **mean** | | | " + " | ".join(f"**{means[k]:.4f}**" for k in keys) + " | | |")
    lines += ["", "Against per-feature scaling, per folder (images; mean in points): " + "; ".join(
        f"{k}: " + ", ".join(f"{round((r[k]['top1'] - r['feature']['top1']) * r['test']):+d}" for r in rows)
        + f" (mean {100 * (means[k] - means['feature']):+.2f})" for k in keys[1:])]
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
