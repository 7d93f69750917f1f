"""Evaluating a finished run on its own test split or on another folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .builtin.datasets import imagefolder
from .data.sources import ImageSet
from .engine.metrics import classification_metrics
from .errors import DataError
from .inference import Ensemble, TrainedModel, load, load_ensemble
from .recipe_loading import load_recipe


def evaluation_images(run_dir: Path, data: str | Path | None) -> ImageSet:
    """``data``: an ImageFolder root (its test/, else val/, else itself as class folders); by
    default the run's own test split (else its validation split)."""
    if data is not None:
        root = Path(data)
        if not root.is_dir():
            raise DataError(f"--data {root}: not a folder of class folders")
        for name in ("test", "val", "valid", "validation"):
            if (root / name).is_dir():
                return imagefolder(str(root / name), val_fraction=0.0, test_fraction=0.0).train
        return imagefolder(str(root), val_fraction=0.0, test_fraction=0.0).train
    from .engine.setup import build_splits

    recipe = load_recipe(Path(run_dir) / "recipe.toml")
    splits = build_splits(recipe)
    chosen = splits.test or splits.val
    if chosen is None:
        raise DataError(f"{run_dir}: the run's data has no test or val split; pass --data DIR")
    return chosen


def evaluate(
    run_dir: str | Path | Sequence[str | Path],
    data: str | Path | None = None,
    *,
    tta: str | None = None,
    model: TrainedModel | Ensemble | None = None,
) -> dict[str, Any]:
    """Metrics of a finished run's model on ``data`` (see ``evaluation_images``). Several run
    directories are evaluated as an ensemble (mean of probabilities); ``tta`` names a
    test-time augmentation policy (``transferkit list tta``)."""
    runs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
    if model is None:
        model = load(runs[0]) if len(runs) == 1 else load_ensemble(runs)
    images = evaluation_images(Path(runs[0]), data)
    missing = sorted(set(images.classes) - set(model.classes))
    if missing:
        raise DataError(f"--data: classes {missing} are not among the model's classes {model.classes}")
    remap = np.array([model.classes.index(c) for c in images.classes])
    targets = remap[np.asarray(images.targets, dtype=np.int64)]
    probs = np.concatenate([
        model.predict_proba([images.load(j) for j in range(i, min(i + 64, len(images)))], tta=tta)
        for i in range(0, len(images), 64)
    ]) if len(images) else np.zeros((0, len(model.classes)))
    return classification_metrics(probs, targets, model.classes)
