"""How far to trust the final model, fitted at the end of a run once its weights are chosen
(``run.py``, after ``train.final``): a temperature on the validation split (``calibration``), a
rejection rule on the validation images' calibrated top probabilities (``rejection``), and what
both do on the test split and on the recipe's "none of these" images (``data.unknown``).

What the run already predicted with the final weights (choosing them, their test figures) comes
from its ``PredictionCache``, not predicted again: the temperature only rescales those logits.
The figures go into ``summary.json`` (``"calibration"``, ``"rejection"``), the temperature and
the rule into the manifest, the reliability diagram into the run directory. Without a
validation split nothing is fitted: the probabilities stay as they are (T = 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from torch import nn

from ...data.sources import ImageSet
from ..evaluation.predict import Predictions, predict
from ..evaluation.prediction_cache import PredictionCache
from ..prepare import Prepared
from ..run_summary import RunSummary
from ..runtime.distributed import DistContext
from .calibration import ECE_BINS, Calibration, ReliabilityBins, calibrate, negative_log_likelihood, reliability_bins, softmax
from .rejection import DEFAULT_RATE, RejectionRule, auroc, fit_rejection, max_probability

MIN_IMAGES = 50  # fewer validation images than this fit no temperature and no rejection rule


@dataclass
class ConfidenceFit:
    """What ``fit_confidence`` found: the manifest's entries, the summary's figures, and the
    reliability diagram's bins (uncalibrated and calibrated) on ``reliability_split``."""

    calibration: Calibration | None = None
    rejection: RejectionRule | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    reliability: tuple[ReliabilityBins, ReliabilityBins] | None = None
    reliability_split: str = ""

    def record(self, summary: RunSummary) -> None:
        """The figures into the run's summary (``calibration``, ``rejection``)."""
        summary.calibration, summary.rejection = self.summary.get("calibration"), self.summary.get("rejection")

    def manifest_entries(self) -> dict[str, Any]:
        if self.calibration is None:
            return {}
        return {"calibration": self.calibration.to_manifest(), "rejection": self.rejection.to_manifest() if self.rejection else None}


def calibration_figures(raw: Predictions, calibrated: Predictions) -> dict[str, float]:
    """NLL and ECE of the same predictions before and after the temperature."""
    before = reliability_bins(raw.probs, raw.targets)
    after = reliability_bins(calibrated.probs, calibrated.targets)
    return {"n": int(len(raw.targets)), "nll_before": negative_log_likelihood(raw.probs, raw.targets),
            "nll_after": negative_log_likelihood(calibrated.probs, calibrated.targets), "ece_before": before.ece,
            "ece_after": after.ece}


def selective_figures(predictions: Predictions, threshold: float) -> dict[str, float]:
    """In-distribution images at a threshold: the fraction rejected (false rejections), the
    accuracy on those accepted, and on all."""
    scores = max_probability(predictions.probs)
    accepted = scores >= threshold
    correct = predictions.preds == predictions.targets
    return {"n": int(len(scores)), "threshold": float(threshold), "rejected": float(1.0 - accepted.mean()) if len(scores) else 0.0,
            "accuracy_accepted": float(correct[accepted].mean()) if accepted.any() else float("nan"),
            "accuracy_all": float(correct.mean()) if len(scores) else float("nan")}


def fit_confidence(
    prepared: Prepared, model: nn.Module, *, dist: DistContext | None = None, log: Callable[[str], None] = print,
    evidence: tuple[np.ndarray, np.ndarray] | None = None, predictions: PredictionCache | None = None, weights: str | None = None,
) -> ConfidenceFit:
    """Fit the temperature and the rejection rule of ``model`` (the run's final weights) on the
    validation split, or on ``evidence`` (logits, labels: cross-fitting's out-of-fold predictions of
    every labelled image), and measure them on the test split and ``data.unknown``. With fewer than
    ``MIN_IMAGES`` to fit on, nothing is fitted unless ``train.calibrate = "always"`` (a temperature
    fitted on a handful of images made test ECE worse in 4 of 5 small runs). ``predictions``: the
    run's, where ``model``'s are kept under the name ``weights`` (what the choice of the final
    weights and the test figures already predicted is not predicted again). Collective across
    processes: every rank predicts its share."""
    recipe, splits = prepared.recipe, prepared.splits
    if splits.val is None or len(splits.val) == 0:
        log("  calibration: no validation split, so the probabilities stay uncalibrated (T = 1) and there is no rejection rule")
        return ConfidenceFit()
    n = len(evidence[1]) if evidence is not None else len(splits.val)
    if recipe.train.calibrate == "never":
        log("  calibration: train.calibrate = \"never\": the probabilities stay as the model gives them (T = 1)")
        return ConfidenceFit()
    if recipe.train.calibrate == "auto" and n < MIN_IMAGES:
        log(f"  calibration: {n} validation images are too few to fit a temperature or a rejection rule (at least {MIN_IMAGES};"
            " train.calibrate = \"always\" fits them anyway); the probabilities stay as the model gives them (T = 1)")
        return ConfidenceFit()

    made = predictions if predictions is not None else PredictionCache()

    def run(images: ImageSet, split: str, desc: str) -> Predictions:
        return made.get(weights, split, lambda: predict(
            model, images, prepared.eval_transform, runtime=prepared.runtime,
            batch_size=recipe.data.eval_batch_size or recipe.data.batch_size * 2, num_workers=recipe.data.num_workers,
            dist=dist, desc=desc))

    started = time.perf_counter()
    if evidence is not None:
        logits, targets = evidence
        probs = softmax(logits)
        val = Predictions(probs.astype(np.float32), np.asarray(targets), list(splits.classes), np.asarray(logits))
    else:
        val = run(splits.val, "val", "val (calibration)")
    calibration = calibrate(val.logits, val.targets)
    t = calibration.temperature
    val_calibrated = val.with_temperature(t)
    summary: dict[str, Any] = {"calibration": {"temperature": t, "bins": ECE_BINS, "val": calibration_figures(val, val_calibrated),
                                               "fitted_on": "out-of-fold" if evidence is not None else "val"}}
    if calibration.held_out is not None:
        summary["calibration"]["held_out"] = calibration.held_out.to_summary()
    if calibration.note or calibration.at_bound:
        summary["calibration"]["note"] = calibration.note or (f"T at the end of its range: the {len(val.targets)} validation images"
                                                              " give little to fit it to")
    test = run(splits.test, "test", "test (calibration)") if splits.test is not None and len(splits.test) else None
    shown = (test, "test") if test is not None else (val, "val")
    if test is not None:
        summary["calibration"]["test"] = calibration_figures(test, test.with_temperature(t))
    unknown = run(prepared.unknown, "unknown", "unknown images") if prepared.unknown is not None else None
    unknown_scores = max_probability(unknown.with_temperature(t).probs) if unknown is not None else None
    rule = fit_rejection(max_probability(val_calibrated.probs), unknown_scores)
    at_rate = rule.threshold_for(DEFAULT_RATE)
    rejection: dict[str, Any] = {"score": "calibrated max probability", "rate": DEFAULT_RATE, "threshold_at_rate": at_rate,
                                 "threshold": rule.threshold, "chosen_by": rule.chosen_by}
    if test is not None:
        rejection["test"] = selective_figures(test.with_temperature(t), at_rate)
    if unknown_scores is not None:
        known = max_probability(shown[0].with_temperature(t).probs)
        rejection["unknown"] = {"n": int(len(unknown_scores)), "folder": recipe.data.unknown, "against": shown[1],
                                "auroc": auroc(known, unknown_scores),
                                "rejected_at_rate": float((unknown_scores < at_rate).mean()) if len(unknown_scores) else 0.0,
                                "rejected_at_threshold": float((unknown_scores < rule.threshold).mean()) if len(unknown_scores) else 0.0}
        if test is not None:
            rejection["test_at_threshold"] = selective_figures(test.with_temperature(t), rule.threshold)
    summary["rejection"] = rejection
    summary["calibration"]["seconds"] = time.perf_counter() - started  # with what was not yet predicted (unknown images, ...)
    raw_shown = shown[0]
    fit = ConfidenceFit(calibration, rule, summary,
                        (reliability_bins(raw_shown.probs, raw_shown.targets),
                         reliability_bins(raw_shown.with_temperature(t).probs, raw_shown.targets)), shown[1])
    return fit


def confidence_lines(summary: dict[str, Any]) -> list[str]:
    """The calibration and rejection figures of a summary, a line each (empty when not fitted)."""
    cal, rej = summary.get("calibration"), summary.get("rejection")
    if not cal:
        return []
    split = "test" if "test" in cal else "val"
    figures = cal[split]
    lines = [f"calibration: T = {cal['temperature']:.3f} (fitted on {cal['val']['n']} {cal.get('fitted_on', 'val')} images); {split} ECE"
             f" {figures['ece_before']:.4f} -> {figures['ece_after']:.4f}, NLL {figures['nll_before']:.4f} -> {figures['nll_after']:.4f}"
             + (f"; {cal['note']}" if cal.get("note") else "")]
    if rej and "test" in rej:
        t = rej["test"]
        lines.append(f"rejection at {rej['rate']:.0%} false rejection on val (top probability < {rej['threshold_at_rate']:.3f}):"
                     f" test accuracy on accepted {t['accuracy_accepted']:.4f} (all {t['accuracy_all']:.4f}), {t['rejected']:.1%} rejected")
    if rej and "unknown" in rej:
        u = rej["unknown"]
        lines.append(f"unknown images: AUROC {u['auroc']:.4f} ({u['n']} images vs {u['against']}); rejected {u['rejected_at_rate']:.1%}"
                     f" at {rej['rate']:.0%} false rejection, {u['rejected_at_threshold']:.1%} at the threshold they chose"
                     f" ({rej['threshold']:.3f})")
    return lines

