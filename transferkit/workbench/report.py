"""``transferkit report RUN_DIR``: one self-contained HTML page about a finished run (recipe,
summary figures, training curves, confusion matrix, per-class precision/recall/F1, the most
confidently wrong images), and the same as Markdown beside it with its figures as PNG files.

The predictions come from the run's exported model on its test split (its validation split when
it has no test split, or ``--data DIR``), computed afresh, so the confusion matrix, the per-class
table and the wrong images all describe the same predictions.

Python: ``build_report(run_dir)`` returns the paths of the HTML and Markdown files.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

NAME = "report"
HELP = "a self-contained HTML page (and Markdown) about a finished run: curves, confusion matrix, per-class scores, wrong images"
EVAL_FOLDERS = ("test", "val", "valid", "validation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--output", metavar="FILE", help="the HTML file (default RUN_DIR/report.html); the Markdown and its PNGs go beside it")
    parser.add_argument("--top-wrong", type=int, default=16, metavar="N", help="how many confidently wrong images to show (default 16)")
    parser.add_argument("--data", metavar="DIR", help="predict on this ImageFolder root (its test/ or val/ when present) instead of the run's split")


@dataclass
class Predictions:
    """The exported model's class probabilities on one labelled set of images."""

    split: str  # "test", "val" or "data"
    where: str  # the same in words, for the page
    classes: list[str]
    probs: np.ndarray
    targets: np.ndarray
    images: Any  # an ImageSet: load(i), describe(i)

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self.probs) else np.zeros(0, dtype=np.int64)


@dataclass
class ReportContent:
    """Everything the page shows, gathered before anything is written."""

    run_dir: Path
    recipe_text: str
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    predictions: Predictions
    class_report: dict[str, Any]
    confusion: list[list[int]]
    wrong: list[int]


def evaluation_set(run_dir: Path, data: str | Path | None) -> tuple[Any, str, str]:
    """The images to predict on, and which they are (``split``, words): the run's test split,
    else its validation split, or ``--data DIR`` as ``transferkit evaluate`` reads it."""
    from ..errors import DataError

    if data is not None:
        from ..evaluation import evaluation_images

        root = Path(data)
        chosen = next((root / n for n in EVAL_FOLDERS if (root / n).is_dir()), root)
        return evaluation_images(run_dir, root), "data", f"the images in {chosen} (--data)"
    from ..engine.setup import build_splits
    from ..recipe_loading import load_recipe

    splits = build_splits(load_recipe(run_dir / "recipe.toml"))
    if splits.test is not None and len(splits.test):
        return splits.test, "test", f"the test split ({len(splits.test)} images)"
    if splits.val is not None and len(splits.val):
        return splits.val, "val", f"the validation split ({len(splits.val)} images): the run has no test split"
    raise DataError(f"{run_dir}: the run's data has no test or val split; pass --data DIR")


def predict_split(run_dir: str | Path, data: str | Path | None = None) -> Predictions:
    """Class probabilities of the run's exported model on its evaluation images."""
    from tqdm.auto import tqdm

    from ..errors import DataError
    from ..inference import load

    run_dir = Path(run_dir)
    model = load(run_dir)
    images, split, where = evaluation_set(run_dir, data)
    missing = sorted(set(images.classes) - set(model.classes))
    if missing:
        raise DataError(f"--data: classes {missing} are not among the model's classes {model.classes}")
    remap = np.array([model.classes.index(c) for c in images.classes])
    targets = remap[np.asarray(images.targets, dtype=np.int64)]
    chunks = [model.predict_proba([images.load(j) for j in range(i, min(i + 64, len(images)))])
              for i in tqdm(range(0, len(images), 64), desc=f"predicting {split}", leave=False, unit="batch", disable=None)]
    probs = np.concatenate(chunks) if chunks else np.zeros((0, len(model.classes)), dtype=np.float32)
    return Predictions(split, where, list(model.classes), probs, targets, images)


def classification_table(pred: Predictions) -> dict[str, Any]:
    """scikit-learn's ``classification_report`` (as a dict) of the predictions, every class listed."""
    from sklearn.metrics import classification_report

    return classification_report(pred.targets, pred.preds, labels=np.arange(len(pred.classes)), target_names=pred.classes,
                                 output_dict=True, zero_division=0)


def most_confidently_wrong(pred: Predictions, k: int) -> list[int]:
    """Indices of the ``k`` wrong predictions made with the highest probability, highest first."""
    preds = pred.preds
    wrong = np.flatnonzero(preds != pred.targets)
    confidence = pred.probs[wrong, preds[wrong]] if len(wrong) else np.zeros(0)
    return [int(i) for i in wrong[np.argsort(-confidence, kind="stable")][: max(k, 0)]]


def gather(run_dir: str | Path, data: str | Path | None = None, top_wrong: int = 16) -> ReportContent:
    """Read the run directory and predict; nothing is written."""
    import json

    from sklearn.metrics import confusion_matrix

    from ..engine.run_dir import RunDir
    from ..errors import TransferkitError

    run = RunDir(run_dir)
    for needed in (run.recipe_file, run.summary_file):
        if not needed.is_file():
            raise TransferkitError(f"{run.path}: no {needed.name}; give a finished run directory (or finish it with --resume)")
    pred = predict_split(run.path, data)
    confusion = confusion_matrix(pred.targets, pred.preds, labels=np.arange(len(pred.classes))).tolist()
    return ReportContent(run.path, run.recipe_file.read_text(), json.loads(run.summary_file.read_text()), run.read_metrics(),
                         pred, classification_table(pred), confusion, most_confidently_wrong(pred, top_wrong))


def build_report(
    run_dir: str | Path,
    output: str | Path | None = None,
    *,
    data: str | Path | None = None,
    top_wrong: int = 16,
    log: Callable[[str], None] = print,
) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ its PNGs) for a finished run;
    returns the HTML and Markdown paths."""
    from ..errors import TransferkitError
    from .report_render import write_report

    if top_wrong < 0:
        raise TransferkitError(f"--top-wrong {top_wrong}: give 0 or more images")
    html_path = Path(output) if output is not None else Path(run_dir) / "report.html"
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise TransferkitError(f"--output {html_path}: name an .html file; the Markdown is written beside it as .md")
    content = gather(run_dir, data, top_wrong)
    md_path = write_report(content, html_path)
    pred = content.predictions
    accuracy = float((pred.preds == pred.targets).mean()) if len(pred.targets) else float("nan")
    log(f"{content.run_dir}: top-1 {accuracy:.4f} on {pred.where}; {int((pred.preds != pred.targets).sum())} wrong,"
        f" {len(content.wrong)} shown")
    log(f"report: {html_path} (self-contained) and {md_path}")
    return html_path, md_path


def run(args: argparse.Namespace) -> int:
    build_report(args.run_dir, args.output, data=args.data, top_wrong=args.top_wrong)
    return 0
