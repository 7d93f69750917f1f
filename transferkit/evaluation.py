"""Evaluating a finished run on its own test or validation split, or on another folder of images.
The predictions come from ``engine.evaluation.predict`` (through ``TrainedModel.predictions``),
the path training measured its figures on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .builtin.datasets import imagefolder
from .data.sources import ImageSet
from .engine.evaluation import Predictions
from .engine.run_dir import RunDir
from .engine.setup import build_splits
from .errors import DataError
from .inference import Ensemble, TrainedModel, load, load_ensemble
from .recipe_loading import load_recipe

EVAL_FOLDERS = ("test", "val", "valid", "validation")
SPLITS = ("test", "val")


@dataclass
class EvaluationImages:
    """The labelled images a run is evaluated on: ``split`` is "test", "val" or "data" (``--data``);
    ``where`` says the same in words."""

    images: ImageSet
    split: str
    where: str


def evaluation_images(run_dir: str | Path, data: str | Path | None = None, split: str | None = None) -> EvaluationImages:
    """``data``: an ImageFolder root (its test/, else val/, else itself as class folders). By
    default the run's own ``split`` ("test" or "val"); without one, its test split, else its
    validation split."""
    if data is not None:
        root = Path(data)
        if not root.is_dir():
            raise DataError(f"--data {root}: not a folder of class folders")
        chosen = next((root / n for n in EVAL_FOLDERS if (root / n).is_dir()), root)
        images = imagefolder(str(chosen), val_fraction=0.0, test_fraction=0.0).train
        return EvaluationImages(images, "data", f"the images in {chosen} (--data)")
    if split is not None and split not in SPLITS:
        raise DataError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    splits = build_splits(load_recipe(RunDir(run_dir).recipe_file))
    test, val = _non_empty(splits.test), _non_empty(splits.val)
    if split == "val" or (split is None and test is None and val is not None):
        if val is None:
            raise DataError(f"{run_dir}: the run's data has no validation split")
        note = "" if split == "val" else ": the run has no test split"
        return EvaluationImages(val, "val", f"the validation split ({len(val)} images){note}")
    if test is None:
        raise DataError(f"{run_dir}: the run's data has no test or val split; pass --data DIR")
    return EvaluationImages(test, "test", f"the test split ({len(test)} images)")


def _non_empty(images: ImageSet | None) -> ImageSet | None:
    return images if images is not None and len(images) else None


def predictions(
    run_dir: str | Path | Sequence[str | Path],
    data: str | Path | None = None,
    *,
    split: str | None = None,
    tta: str | None = None,
    model: TrainedModel | Ensemble | None = None,
) -> tuple[Predictions, EvaluationImages]:
    """The run's (or the ensemble's) predictions on its evaluation images, and which those are.
    Images that cannot be read are left out and listed (``Predictions.skipped``); ``chosen.images``
    is then the images predicted, row for row."""
    runs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
    if model is None:
        model = load(runs[0]) if len(runs) == 1 else load_ensemble(runs)
    chosen = evaluation_images(runs[0], data, split)
    predicted = model.predictions(chosen.images, tta=tta, on_bad="skip")
    if predicted.kept is not None:
        if not len(predicted.kept):
            shown = "; ".join(f"{f}: {r}" for f, r in predicted.skipped[:5])
            raise DataError(f"none of the {len(chosen.images)} images of {chosen.where} could be read ({shown})")
        chosen = EvaluationImages(chosen.images.subset(predicted.kept.tolist()), chosen.split, chosen.where)
    return predicted, chosen


def evaluate(
    run_dir: str | Path | Sequence[str | Path],
    data: str | Path | None = None,
    *,
    split: str | None = None,
    tta: str | None = None,
    model: TrainedModel | Ensemble | None = None,
) -> dict[str, Any]:
    """Metrics of a finished run's model on ``data`` or on its own ``split`` (see
    ``evaluation_images``). Several run directories are evaluated as an ensemble (mean of
    probabilities); ``tta`` names a test-time augmentation policy (``transferkit list tta``);
    ``model`` (a loaded run, e.g. with other weights put in) replaces loading ``run_dir``.
    Images that cannot be read are left out of the figures and listed under ``"skipped"``."""
    return predictions(run_dir, data, split=split, tta=tta, model=model)[0].metrics()
