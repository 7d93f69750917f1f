"""What the head should read: phase 1's probe on the pooled features against the pooled features
plus the last stages' averaged outputs (``backbone.readout``), on folders of images.

    .venv/bin/python benchmarks/readout.py ROOT [ROOT ...] [--backbone timm/tf_efficientnet_lite0]
        [--stages 0,1,2,3] [--out benchmarks/READOUT.md]

Each ROOT is an ImageFolder with ``train/`` and ``test/``. Features are computed once per folder at
the backbone's native pretrained preprocessing (timm's data config, as a user's own probe script
does), with every stage's output kept; each row is transferkit's phase-1 probe (``fit_probe``: C by
5-fold cross-validation, hard labels) on the pooled features followed by the last k stages'
averages, fitted on all of ``train/`` and scored on ``test/``. k = 0 is the pooled readout, the
features a scikit-learn probe reads. Results go to ``--out`` (and ``.json`` beside it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def features(
    backbone: str, root: Path, size: int | None = None, crop_pct: float | None = None,
) -> dict[str, tuple[list[torch.Tensor], torch.Tensor]]:
    """Per split: [pooled, stage 1 average, ..., last stage average] and the labels, at timm's
    preprocessing for the backbone (its size and crop_pct unless given)."""
    from timm.data import create_transform, resolve_data_config
    from torchvision import datasets

    from transferkit import create_backbone

    body = create_backbone(backbone, weights="imagenet").body.eval()
    config = resolve_data_config({}, model=body)
    if size is not None:
        config["input_size"] = (3, size, size)
    if crop_pct is not None:
        config["crop_pct"] = crop_pct
    transform = create_transform(**config)
    out = {}
    for split in ("train", "test"):
        folder = datasets.ImageFolder(str(root / split), transform)
        parts, labels = [], []
        with torch.no_grad():
            for images, y in torch.utils.data.DataLoader(folder, batch_size=64):
                final, stages = body.forward_intermediates(images)
                parts.append([body.forward_head(final, pre_logits=True).flatten(1), *(s.mean((2, 3)) for s in stages)])
                labels.append(y)
        out[split] = ([torch.cat(p) for p in zip(*parts)], torch.cat(labels))
    return out


def readout(feats: dict, split: str, k: int) -> torch.Tensor:
    """The pooled features followed by the last ``k`` stages' averages."""
    parts = feats[split][0]
    return torch.cat([parts[0], *(parts[1:][-k:] if k else [])], 1)


def score(feats: dict, k: int) -> float:
    """Test top-1 of transferkit's probe (C by 5-fold CV) fitted on all of train."""
    from transferkit.engine.training.probe import fit_probe

    y, y_test = feats["train"][1], feats["test"][1]
    fit = fit_probe(readout(feats, "train", k), y, int(y.max()) + 1)
    return float(((readout(feats, "test", k) @ fit.weight.T + fit.bias).argmax(1) == y_test).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", metavar="ROOT")
    parser.add_argument("--backbone", default="timm/tf_efficientnet_lite0")
    parser.add_argument("--stages", default="0,1,2,3", help="comma-separated k: the last k stages read beside the pooled features")
    parser.add_argument("--out", default=str(HERE / "READOUT.md"))
    args = parser.parse_args()
    ks = [int(k) for k in args.stages.split(",")]
    rows = []
    for given in args.roots:
        root = Path(given).resolve()
        started = time.perf_counter()
        feats = features(args.backbone, root)
        row = {"name": root.name, "train": len(feats["train"][1]), "test": len(feats["test"][1]),
               "classes": int(feats["train"][1].max()) + 1, "widths": [p.shape[1] for p in feats["train"][0]]}
        row["top1"] = {k: score(feats, k) for k in ks}
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        print(row["name"], {k: round(v, 4) for k, v in row["top1"].items()}, flush=True)
        write(rows, ks, args)


def write(rows: list[dict], ks: list[int], args: argparse.Namespace) -> None:
    widths = rows[0]["widths"]
    label = {k: "pooled" if k == 0 else f"+ last {k} ({'+'.join(str(w) for w in widths[1:][-k:])})" for k in ks}
    lines = [
        "# Readout: what phase 1's probe reads", "",
        f"`python benchmarks/readout.py {' '.join(r['name'] for r in rows)} --backbone {args.backbone}`: transferkit's",
        f"probe (C by 5-fold CV) on all of `train/`, test top-1 on `test/`, features at the backbone's native preprocessing;",
        f"pooled = its {widths[0]} pooled features; + last k = followed by the global average of each of the last k stages.", "",
        "| dataset | classes | train / test | " + " | ".join(label[k] for k in ks) + " |",
        "|---|---|---|" + "---|" * len(ks),
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['classes']} | {r['train']} / {r['test']} | " + " | ".join(f"{r['top1'][k]:.4f}" for k in ks) + " |")
    means = {k: float(np.mean([r["top1"][k] for r in rows])) for k in ks}
    lines.append("| **mean** | | | " + " | ".join(f"**{means[k]:.4f}**" for k in ks) + " |")
    if 0 in ks:
        lines += ["", "Gain over the pooled readout, per folder (points): " + "; ".join(
            f"k={k}: " + ", ".join(f"{100 * (r['top1'][k] - r['top1'][0]):+.1f}" for r in rows) for k in ks if k)]
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
