"""``transferkit report RUN_DIR``: one self-contained HTML page about a finished run (recipe,
summary figures, training curves, confusion matrix, per-class precision/recall/F1, calibration
and its reliability diagram, the rejection trade-off, the most confidently wrong images), and
the same as Markdown beside it with its figures as PNG files.

The predictions come from the run's exported model on its test split (its validation split when
it has no test split, or ``--data DIR``), computed afresh with the run's temperature, so the
confusion matrix, the per-class table, the calibration figures, the trade-off curve and the
wrong images all describe the same predictions.

Python: ``build_report(run_dir)`` (this module) returns the paths of the HTML and Markdown files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from ...data.sources import ImageSet
from ...engine.evaluation.predict import Predictions
from ...engine.final.calibration import ReliabilityBins, negative_log_likelihood, reliability_bins
from ...engine.final.confidence import selective_figures
from ...engine.final.rejection import DEFAULT_RATE, max_probability, tradeoff_curve
from ...engine.rundir.output_paths import check_output_file
from ...engine.rundir.run_dir import RunDir
from ...errors import TransferkitError, printable
from ...evaluate_multilabel import is_multilabel_run
from ...evaluate_run import predictions
from ...inference import load
from .html_markdown import write_report
from .multilabel_report import build_multilabel_report


@dataclass
class ReportPredictions:
    """The exported model's class probabilities on one labelled set of images."""

    split: str  # "test", "val" or "data"
    where: str  # the same in words, for the page
    classes: list[str]
    probs: np.ndarray
    targets: np.ndarray
    images: ImageSet  # load(i), describe(i)
    raw_probs: np.ndarray | None = None  # without the run's temperature
    temperature: float = 1.0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # images that could not be read (file, reason)

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self.probs) else np.zeros(0, dtype=np.int64)


@dataclass
class ReportConfidence:
    """Calibration (before / after the run's temperature) and the rejection trade-off of the
    report's predictions. ``at_rate``: the figures at the run's threshold for ``rate`` false
    rejection on validation (None for runs without a rejection rule)."""

    temperature: float
    fitted: bool
    before: ReliabilityBins
    after: ReliabilityBins
    nll_before: float
    nll_after: float
    rejected: np.ndarray
    accuracy: np.ndarray
    rate: float = DEFAULT_RATE
    at_rate: dict[str, float] | None = None


@dataclass
class ReportContent:
    """Everything the page shows, gathered before anything is written."""

    run_dir: Path
    recipe_text: str
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    predictions: ReportPredictions
    class_report: dict[str, Any]
    confusion: list[list[int]]
    wrong: list[int]
    confidence: ReportConfidence | None = None


def predict_split(
    run_dir: str | Path, data: str | Path | None = None, dataset: Any = None
) -> tuple[ReportPredictions, ReportConfidence]:
    """Class probabilities of the run's exported model on its evaluation images (the run's test
    split, else its validation split, ``--data DIR|CSV``, or a Python ``dataset``), as
    ``transferkit evaluate`` computes them, and what its temperature and rejection rule do on them."""
    model = load(run_dir)
    predicted, chosen = predictions(run_dir, data, model=model, dataset=dataset)
    raw = predicted.with_temperature(1.0)
    pred = ReportPredictions(chosen.split, chosen.where, predicted.classes, predicted.probs, predicted.targets, chosen.images,
                             raw.probs, model.temperature, predicted.skipped)
    threshold = model.rejection.threshold_for(DEFAULT_RATE) if model.rejection is not None else None
    return pred, confidence_of(predicted, raw, "calibration" in model.manifest, threshold)


def confidence_of(calibrated: Predictions, raw: Predictions, fitted: bool, threshold: float | None) -> ReportConfidence:
    """Reliability bins and NLL before and after the temperature; the trade-off curve of
    rejecting the lowest calibrated top probabilities; the figures at ``threshold``."""
    correct = calibrated.preds == calibrated.targets
    rejected, accuracy = tradeoff_curve(max_probability(calibrated.probs), correct)
    return ReportConfidence(
        calibrated.temperature, fitted, reliability_bins(raw.probs, raw.targets), reliability_bins(calibrated.probs, calibrated.targets),
        negative_log_likelihood(raw.probs, raw.targets), negative_log_likelihood(calibrated.probs, calibrated.targets),
        rejected, accuracy, at_rate=selective_figures(calibrated, threshold) if threshold is not None else None,
    )


def classification_table(pred: ReportPredictions) -> dict[str, Any]:
    """scikit-learn's ``classification_report`` (as a dict) of the predictions, every class listed."""
    return classification_report(pred.targets, pred.preds, labels=np.arange(len(pred.classes)), target_names=pred.classes,
                                 output_dict=True, zero_division=0)


def most_confidently_wrong(pred: ReportPredictions, k: int) -> list[int]:
    """Indices of the ``k`` wrong predictions made with the highest probability, highest first."""
    preds = pred.preds
    wrong = np.flatnonzero(preds != pred.targets)
    confidence = pred.probs[wrong, preds[wrong]] if len(wrong) else np.zeros(0)
    return [int(i) for i in wrong[np.argsort(-confidence, kind="stable")][: max(k, 0)]]


def gather(run_dir: str | Path, data: str | Path | None = None, top_wrong: int = 16, dataset: Any = None) -> ReportContent:
    """Read the run directory and predict; nothing is written."""
    run = RunDir(run_dir)
    for needed in (run.recipe_file, run.summary_file):
        if not needed.is_file():
            raise TransferkitError(f"{run.path}: no {needed.name}; give a finished run directory (or finish it with --resume)")
    pred, confidence = predict_split(run.path, data, dataset)
    confusion = confusion_matrix(pred.targets, pred.preds, labels=np.arange(len(pred.classes))).tolist()
    return ReportContent(run.path, run.read_recipe_text(), run.read_summary(), run.read_metrics(),
                         pred, classification_table(pred), confusion, most_confidently_wrong(pred, top_wrong), confidence)


def build_report(
    run_dir: str | Path,
    output: str | Path | None = None,
    *,
    data: str | Path | None = None,
    dataset: Any = None,
    top_wrong: int = 16,
    log: Callable[[str], None] = print,
) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ its PNGs) for a finished run;
    returns the HTML and Markdown paths. The predictions are on the run's test split, or ``data``
    (a folder or CSV), or ``dataset`` (a Python dataset: how a run trained on one is reported)."""
    if top_wrong < 0:
        raise TransferkitError(f"--top-wrong {top_wrong}: give 0 or more images")
    html_path = Path(output) if output is not None else Path(run_dir) / "report.html"
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise TransferkitError(f"--output {html_path}: name an .html file; the Markdown is written beside it as .md")
    for target in (html_path, html_path.with_suffix(".md")):
        check_output_file(target, "--output")  # writable, not a run's own file: before any image is decoded
    if dataset is None and is_multilabel_run(run_dir):
        return build_multilabel_report(run_dir, html_path, data, log)
    content = gather(run_dir, data, top_wrong, dataset)
    md_path = write_report(content, html_path)
    pred = content.predictions
    accuracy = float((pred.preds == pred.targets).mean()) if len(pred.targets) else float("nan")
    log(f"{content.run_dir}: top-1 {accuracy:.4f} on {pred.where}; {int((pred.preds != pred.targets).sum())} wrong,"
        f" {len(content.wrong)} shown")
    if pred.skipped:
        shown = "; ".join(f"{printable(f)}: {printable(r)}" for f, r in pred.skipped[:5])
        log(f"skipped {len(pred.skipped)} image(s) that could not be read: {shown}")
    log(f"report: {html_path} (self-contained) and {md_path}")
    return html_path, md_path


report = build_report  # the public name: transferkit.report(run_dir, dataset=...)
