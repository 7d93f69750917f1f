"""Evaluating a finished run on its own test or validation split, or on another folder of images.
The predictions come from ``engine.evaluation.predict.predict`` (through ``TrainedModel.predictions``),
the path training measured its figures on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .builtin.csv_manifest import read_manifest
from .builtin.datasets import imagefolder
from .data.sources import FileImages, ImageSet
from .data.tar_shards import is_shard_item
from .data.user_datasets import WrappedDataset
from .engine.evaluation.predict import Predictions
from .engine.prepare import build_splits
from .engine.rundir.run_dir import RunDir
from .errors import DataError
from .inference import Ensemble, TrainedModel, load, load_ensemble
from .recipe_loading import load_recipe, read_toml

EVAL_FOLDERS = ("test", "val", "valid", "validation")
SPLITS = ("test", "val")
PYTHON_ITEM = re.compile(r"^(val_|test_)?dataset\[\d+\]$")  # splits.csv's name of a Python dataset's item


@dataclass
class EvaluationImages:
    """The labelled images a run is evaluated on: ``split`` is "test", "val" or "data" (``--data``);
    ``where`` says the same in words."""

    images: ImageSet
    split: str
    where: str


def evaluation_images(
    run_dir: str | Path,
    data: str | Path | None = None,
    split: str | None = None,
    *,
    dataset: Any = None,
    classes: Sequence[str] | None = None,
) -> EvaluationImages:
    """``dataset``: a Python dataset (as ``finetune`` takes; its labels mapped into ``classes``,
    the model's). ``data``: an ImageFolder root (its test/, else val/, else itself as class
    folders) or a CSV manifest (its test rows, else its val rows, else all). By default the run's
    own ``split`` ("test" or "val") as ``splits.csv`` recorded it; without one, its test split,
    else its validation split."""
    if dataset is not None:
        images = dataset if isinstance(dataset, ImageSet) else WrappedDataset(dataset, classes, role="dataset")
        return EvaluationImages(images, "data", f"the {len(images)} images of the dataset given")
    if data is not None:
        return _data_images(Path(data))
    if split is not None and split not in SPLITS:
        raise DataError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    splits = _recorded_splits(RunDir(run_dir)) or _rebuilt_splits(run_dir)
    test, val = _non_empty(splits.get("test")), _non_empty(splits.get("val"))
    if split == "val" or (split is None and test is None and val is not None):
        if val is None:
            raise DataError(f"{run_dir}: the run's data has no validation split")
        note = "" if split == "val" else ": the run has no test split"
        return EvaluationImages(val, "val", f"the validation split ({len(val)} images){note}")
    if test is None:
        raise DataError(f"{run_dir}: the run's data has no test or val split; pass --data DIR")
    return EvaluationImages(test, "test", f"the test split ({len(test)} images)")


def _data_images(root: Path) -> EvaluationImages:
    if root.is_file() and root.suffix.lower() == ".csv":
        manifest = read_manifest(root)
        which = next((s for s in ("test", "val") if manifest.rows.get(s)), None)
        images = manifest.images(which) if which else manifest.everything()
        rows = f"the {which} rows" if which else "the rows"
        return EvaluationImages(images, "data", f"{rows} of {root} ({len(images)} images, --data)")
    if not root.is_dir():
        raise DataError(f"--data {root}: not a folder of class folders or a CSV manifest (path,label[,split])")
    chosen = next((root / n for n in EVAL_FOLDERS if (root / n).is_dir()), root)
    images = imagefolder(str(chosen), val_fraction=0.0, test_fraction=0.0).train
    return EvaluationImages(images, "data", f"the images in {chosen} (--data)")


def _recorded_splits(run: RunDir) -> dict[str, ImageSet] | None:
    """The run's val and test images as ``splits.csv`` recorded them, when they are files; None
    for runs without the file, or whose images were in memory (a built-in source rebuilds them)."""
    rows = [r for r in run.read_splits() if r["split"] in SPLITS]
    if not rows:
        return None
    if any(PYTHON_ITEM.match(r["image"]) for r in rows):
        raise DataError(
            f"{run.path}: the run was trained on a Python dataset, whose images are not files: evaluate it with"
            f" transferkit.evaluate({str(run.path)!r}, dataset=your_test_set), or give --data DIR|CSV"
        )
    if not all(Path(r["image"]).is_absolute() for r in rows) or any(is_shard_item(r["image"]) for r in rows):
        return None  # images in memory (e.g. the digits source) or in tar shards: rebuilt from the recipe
    missing = [r["image"] for r in rows if not Path(r["image"]).is_file()]
    if missing:
        raise DataError(f"{run.path}: {len(missing)} of its evaluation images are gone (e.g. {missing[0]}); give --data DIR|CSV")
    classes = sorted({r["label"] for r in run.read_splits()})
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, ImageSet] = {}
    for name in SPLITS:
        part = [r for r in rows if r["split"] == name]
        if part:
            out[name] = FileImages([r["image"] for r in part], [index[r["label"]] for r in part], classes)
    return out


def _non_empty(images: ImageSet | None) -> ImageSet | None:
    return images if images is not None and len(images) else None


def _rebuilt_splits(run_dir: str | Path) -> dict[str, ImageSet]:
    """Runs from before splits.csv: the recipe's data source, split again as it was (recipes
    from before ``data.split_seed`` split with ``seed``)."""
    recipe_file = RunDir(run_dir).recipe_file
    written = read_toml(recipe_file) if recipe_file.is_file() else {}
    overrides = {} if "split_seed" in written.get("data", {}) else {"data.split_seed": written.get("seed", 0)}
    splits = build_splits(load_recipe(recipe_file, overrides))
    return {name: images for name, images in (("val", splits.val), ("test", splits.test)) if images is not None}


def predictions(
    run_dir: str | Path | Sequence[str | Path],
    data: str | Path | None = None,
    *,
    split: str | None = None,
    tta: str | None = None,
    model: TrainedModel | Ensemble | None = None,
    raw: bool = False,
    dataset: Any = None,
) -> tuple[Predictions, EvaluationImages]:
    """The run's (or the ensemble's) predictions on its evaluation images, and which those are;
    calibrated unless ``raw``. Images that cannot be read are left out and listed
    (``Predictions.skipped``); ``chosen.images`` is then the images predicted, row for row."""
    runs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
    if model is None:
        model = load(runs[0]) if len(runs) == 1 else load_ensemble(runs)
    chosen = evaluation_images(runs[0], data, split, dataset=dataset, classes=model.classes)
    predicted = model.predictions(chosen.images, tta=tta, raw=raw, on_bad="skip")
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
    raw: bool = False,
    dataset: Any = None,
) -> dict[str, Any]:
    """Metrics of a finished run's model on ``dataset`` (a Python dataset, as ``finetune`` takes),
    on ``data`` (a folder or CSV) or on its own ``split`` (see ``evaluation_images``). Several run
    directories are evaluated as an ensemble (mean of probabilities); ``tta`` names a test-time
    augmentation policy (``transferkit list tta``); ``model`` (a loaded run, e.g. with other
    weights put in) replaces loading ``run_dir``. Macro-F1 averages over the classes present. The
    probabilities (and so the loss and the ECE) are calibrated with the run's temperature unless
    ``raw``; accuracy is the same either way. Images that cannot be read are left out of the
    figures and listed under ``"skipped"``."""
    return predictions(run_dir, data, split=split, tta=tta, model=model, raw=raw, dataset=dataset)[0].metrics()
