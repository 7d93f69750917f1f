"""One transfer-benchmark case per process, printing a ``RESULT {json}`` line.

    python benchmarks/transfer_cases.py CASE ROOT --recipe recipes/flowers.toml [--tmp DIR (kept)] [--set K=V ...]

Cases, all on ROOT's ``train/`` (fit) and ``test/`` (scored) with the recipe's backbone:
- ``native_probe``: scikit-learn logistic regression (C = 1, and C by 5-fold cross-validation) on
  the backbone's pooled features at its native pretrained preprocessing (timm's data config:
  224 px, crop_pct, bicubic for tf_efficientnet_lite0), as a user's own 20-line script does;
- ``probe``: the same on the features transferkit's own evaluation transform gives;
- ``fastai``: fastai's documented ``vision_learner(...).fine_tune(4)`` on the same weights;
- ``recipe``: ``transferkit finetune RECIPE --set data.root=ROOT`` through the real command;
- ``loop``: the hand-written fine-tuning loop of the seed's train.py (torchvision ImageFolder,
  RandomResizedCrop + flip, Adam at 1e-3 on the whole network, the last epoch kept), on the same
  backbone with the same ImageNet weights and the normalisation those weights expect.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def _recipe(args: argparse.Namespace):
    from transferkit import load_recipe

    return load_recipe(args.recipe, [f"data.root={args.root}", *args.set], check_data=False)


# -- (i) the scikit-learn probe ---------------------------------------------------------------------
def probe(args: argparse.Namespace) -> dict:
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    from transferkit import load_recipe
    from transferkit.engine.training.feature_cache import FeatureCache
    from transferkit.engine.prepare import prepare

    base = _recipe(args)
    # the features a user's probe reads (the pooled ones), at the recipe's evaluation transform
    recipe = load_recipe(base.to_dict(), ["data.val_fraction=0.0", "backbone.readout=pooled"], check_data=False)
    started = time.perf_counter()
    prepared = prepare(recipe, log=lambda m: None)
    feats = {}
    for split in ("train", "test"):
        images = getattr(prepared.splits, split)
        cache = FeatureCache.compute(prepared.model.backbone, images, prepared.eval_transform, prepared.runtime, batch_size=64)
        feats[split] = (cache.features[0].numpy(), cache.targets.numpy())
    feature_seconds = time.perf_counter() - started
    (x, y), (xt, yt) = feats["train"], feats["test"]
    out = {"feature_seconds": feature_seconds, "train_images": len(y), "test_images": len(yt), "classes": len(prepared.splits.classes)}
    warnings.filterwarnings("ignore")
    for name, clf in (("C1", LogisticRegression(max_iter=5000)), ("CV", LogisticRegressionCV(Cs=10, cv=5, max_iter=5000))):
        t = time.perf_counter()
        clf.fit(x, y)
        out[f"{name}_top1"] = float((clf.predict(xt) == yt).mean())
        out[f"{name}_seconds"] = feature_seconds + time.perf_counter() - t
        if name == "CV":
            out["CV_C"] = float(clf.C_[0])
    return out


# -- (i b) the probe a user writes: the backbone's own pretrained preprocessing (timm) ------------------
def native_backbone(name: str) -> tuple[nn.Module, dict, object]:
    """The backbone's body with transferkit's packaged ImageNet weights (pooled features, eval
    mode), timm's data config for it and the transform that config gives (the pretrained size,
    crop_pct and interpolation): what a user's own probe script builds. Also used by
    ``multilabel.py``."""
    from timm.data import create_transform, resolve_data_config

    from transferkit import create_backbone

    body = create_backbone(name, weights="imagenet").body.eval()
    config = resolve_data_config({}, model=body)
    return body, config, create_transform(**config)


def pooled_features(body: nn.Module, dataset: torch.utils.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``body``'s features of every ``(image, target)`` of ``dataset`` in order, and the targets."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=64)
    with torch.no_grad():
        chunks = [(body(x), y) for x, y in loader]
    return torch.cat([c[0] for c in chunks]).numpy(), torch.cat([c[1] for c in chunks]).numpy()


def native_probe(args: argparse.Namespace) -> dict:
    """scikit-learn on features at the backbone's native preprocessing, as a user's script computes
    them: timm's ``resolve_data_config`` + ``create_transform`` (the pretrained size, crop_pct and
    interpolation), torchvision's ImageFolder, the same packaged weights."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from torchvision import datasets

    started = time.perf_counter()
    body, config, transform = native_backbone(_recipe(args).backbone.name)
    feats = {}
    for split in ("train", "test"):
        folder = datasets.ImageFolder(str(Path(args.root) / split), transform, loader=lambda p: datasets.folder.default_loader(p))
        feats[split] = pooled_features(body, folder)
    feature_seconds = time.perf_counter() - started
    (x, y), (xt, yt) = feats["train"], feats["test"]
    out = {"feature_seconds": feature_seconds, "train_images": len(y), "test_images": len(yt), "classes": int(y.max()) + 1,
           "input_size": list(config["input_size"]), "crop_pct": config.get("crop_pct"), "interpolation": config.get("interpolation")}
    warnings.filterwarnings("ignore")
    for name, clf in (("C1", LogisticRegression(max_iter=5000)), ("CV", LogisticRegressionCV(Cs=10, cv=5, max_iter=5000))):
        t = time.perf_counter()
        clf.fit(x, y)
        out[f"{name}_top1"] = float((clf.predict(xt) == yt).mean())
        out[f"{name}_seconds"] = feature_seconds + time.perf_counter() - t
    return out


# -- (i c) fastai's fine_tune, as its documentation teaches it ------------------------------------------------
def fastai(args: argparse.Namespace) -> dict:
    """``vision_learner(dls, arch).fine_tune(4)`` (fastai's default base_lr 2e-3, one frozen epoch
    then four unfrozen), ``ImageDataLoaders.from_folder(train/, valid_pct=0.1)`` with
    ``Resize(size)`` and ``aug_transforms()``, on the same timm body and packaged weights,
    normalised by the backbone's own mean/std (fastai's ``_timm_norm`` adds them only for its own
    download of the weights, so here they are added the same way by hand)."""
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        Resize,
        accuracy,
        aug_transforms,
        get_image_files,
        vision_learner,
    )
    from timm.data import resolve_data_config

    from transferkit import create_backbone

    torch.manual_seed(0)
    name = _recipe(args).backbone.name
    pretrained = create_backbone(name, weights="imagenet").body
    config = resolve_data_config({}, model=pretrained)
    size = int(config["input_size"][-1])
    dls = ImageDataLoaders.from_folder(
        Path(args.root) / "train", valid_pct=0.1, seed=0, item_tfms=Resize(size),
        batch_tfms=[*aug_transforms(), Normalize.from_stats(config["mean"], config["std"])], num_workers=0,
    )
    learn = vision_learner(dls, name.split("/", 1)[1], pretrained=False, metrics=accuracy)
    learn.model[0].model.load_state_dict(pretrained.state_dict())
    started = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(args.fastai_epochs)
    test = learn.dls.test_dl(get_image_files(Path(args.root) / "test"), with_labels=True)
    preds, targets = learn.get_preds(dl=test)
    return {"top1": float((preds.argmax(1) == targets).float().mean()), "seconds": time.perf_counter() - started,
            "epochs": args.fastai_epochs, "size": size, "mean": list(config["mean"])}


# -- (ii) the recipe, through the command --------------------------------------------------------------
def recipe(args: argparse.Namespace) -> dict:
    run = Path(args.tmp) / "run"
    command = [sys.executable, "-m", "transferkit", "finetune", str(args.recipe), "--set", f"data.root={args.root}",
               "--output", str(run)]
    for item in args.set:
        command += ["--set", item]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"transferkit finetune failed: {done.stderr.strip().splitlines()[-1:]}")
    summary = json.loads((run / "summary.json").read_text())
    phases = summary.get("phases", {})
    calibration = summary.get("calibration", {})
    return {
        "top1": summary["test"]["top1"],
        "extract_top1": phases.get("extract", {}).get("test_top1"),
        "finetune_top1": phases.get("finetune", {}).get("test_top1"),
        "probe": phases.get("extract", {}).get("probe"),
        "final": summary.get("final", {}),
        "ece": {"raw": summary["test"].get("ece"), **{k: calibration.get("test", {}).get(k) for k in ("ece_before", "ece_after")},
                "fitted_on": calibration.get("fitted_on"), "n": calibration.get("val", {}).get("n"),
                "temperature": calibration.get("temperature"), "held_out": calibration.get("held_out")},
        "seconds": wall,
    }


# -- (iii) the hand-written loop -------------------------------------------------------------------------
def _plain_model(backbone: str, num_classes: int) -> tuple[nn.Module, dict]:
    """The backbone with its packaged ImageNet weights, as a user loads them by hand."""
    import timm

    from transferkit import create_backbone

    features = create_backbone(backbone, weights="imagenet")  # the same packaged weights as the recipe
    name = backbone.split("/", 1)[1]
    model = timm.create_model(name, num_classes=num_classes)
    own = model.state_dict()
    model.load_state_dict({**own, **{k[len("body."):]: v for k, v in features.state_dict().items()}})
    return model, timm.data.resolve_data_config({}, model=model)


def loop(args: argparse.Namespace) -> dict:
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    size = _recipe(args).data.image_size or 224
    classes = sorted(p.name for p in (Path(args.root) / "train").iterdir() if p.is_dir())
    model, cfg = _plain_model(_recipe(args).backbone.name, len(classes))
    norm = transforms.Normalize(cfg["mean"], cfg["std"])
    train_tf = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm])
    test_tf = transforms.Compose([transforms.Resize(int(size / 0.875)), transforms.CenterCrop(size), transforms.ToTensor(), norm])
    rgb = lambda path: datasets.folder.default_loader(path)  # noqa: E731 - PIL, converted to RGB
    train = datasets.ImageFolder(str(Path(args.root) / "train"), train_tf, loader=rgb)
    test = datasets.ImageFolder(str(Path(args.root) / "test"), test_tf, loader=rgb)
    train_loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test, batch_size=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    started = time.perf_counter()
    curve = []
    for _ in range(args.epochs):
        model.train()
        for images, labels in train_loader:
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += int((model(images).argmax(-1) == labels).sum())
        curve.append(correct / len(test))
    return {"top1": curve[-1], "curve": [round(c, 4) for c in curve], "seconds": time.perf_counter() - started}


CASES = {f.__name__: f for f in (probe, native_probe, fastai, recipe, loop)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("root")
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "flowers.toml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--epochs", type=int, default=6, help="loop: epochs of the hand-written loop")
    parser.add_argument("--fastai-epochs", type=int, default=4, help="fastai: fine_tune(N)")
    parser.add_argument("--tmp", default=None, help="where the case writes, kept (the recipe case: DIR/run, which"
                        " benchmarks/candidates.py reads); unset: a temporary folder, removed at the end")
    args = parser.parse_args()
    if args.tmp is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="transferkit-transfer-") as args.tmp:
            result = CASES[args.case](args)
    else:
        result = CASES[args.case](args)
    print("RESULT " + json.dumps({"case": args.case, **result}, default=float))
    sys.stdout.flush()


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
