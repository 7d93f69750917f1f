"""Calibrated probabilities: one temperature ``T`` for a trained classifier, fitted on its
validation split (Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
ICML 2017): the probabilities become ``softmax(logits / T)``. Dividing every logit by the same
positive number keeps each image's ranking of the classes, so accuracy is unchanged; only the
confidence moves. ``T`` minimises the validation negative log-likelihood (L-BFGS on ``log T``).

Also the measures of calibration: the negative log-likelihood and the expected calibration
error (ECE: equal-width bins of the top probability, 15 by default; the weighted mean gap between
each bin's accuracy and its mean confidence), and the reliability diagram's bins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ECE_BINS = 15
# log T is searched in [-3, 3] (T from 0.05 to 20), a guard against a degenerate fit on a few
# images (``Calibration.at_bound`` says when it was reached)
LOG_T_BOUND = 3.0
# the temperature is kept only when, fitted on 4/5 of the images, it lowers both the NLL and the
# ECE of the other 1/5 (pooled over the 5 folds): see ``held_out_check``
CHECK_FOLDS = 5


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` over the last axis, in float64, stable."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p(true class)`` (probabilities clipped at 1e-12)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return float("nan")
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()) + 0.0  # not -0.0


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin ``b`` holds confidences in ``(b / bins, (b + 1) / bins]`` (0 goes to the first bin)."""
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


@dataclass
class ReliabilityBins:
    """Per bin of the top probability: how many images, their mean confidence and accuracy
    (NaN in empty bins)."""

    edges: np.ndarray  # [bins + 1]
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        total = self.count.sum()
        if total == 0:
            return float("nan")
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((self.count[filled] * gaps).sum() / total)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> ReliabilityBins:
    """The reliability diagram's bins of class probabilities ``[N, C]`` against labels ``[N]``."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == labels) if len(probs) else np.zeros(0, dtype=bool)
    which = _bin_of(confidence, bins)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(which, weights=correct.astype(np.float64), minlength=bins) / count
    return ReliabilityBins(np.linspace(0.0, 1.0, bins + 1), count, mean_conf, accuracy)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-width bins of the top probability (Guo et al. 2017, eq. 3)."""
    return reliability_bins(probs, labels, bins).ece


def calibrated_log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """The mean NLL after the temperature that minimises it: how well the logits rank the true
    class, whatever their scale (a model trained with label smoothing is under-confident by
    design; its raw log-loss would lose to an unsmoothed probe's however good its answers)."""
    logits = np.asarray(logits, dtype=np.float64)
    if len(labels) == 0:
        return float("nan")
    return negative_log_likelihood(softmax(logits, fit_temperature(logits, labels)), np.asarray(labels))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, max_iter: int = 100) -> float:
    """The temperature minimising the mean NLL of ``softmax(logits / T)`` on ``labels``: L-BFGS
    (strong Wolfe line search) on ``log T`` in float64, from T = 1, kept in
    ``[exp(-LOG_T_BOUND), exp(LOG_T_BOUND)]``. 1.0 when there are no images."""
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if len(labels_t) == 0:
        return 1.0
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        bounded = log_t.clamp(-LOG_T_BOUND, LOG_T_BOUND)
        loss = torch.nn.functional.cross_entropy(z / bounded.exp(), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.exp(np.clip(log_t.detach().item(), -LOG_T_BOUND, LOG_T_BOUND)))


@dataclass(frozen=True)
class HeldOutCheck:
    """Does a temperature carry over to images it was not fitted on? The pooled held-out NLL and
    ECE of ``folds`` fits, each on the other folds, against the raw probabilities (T = 1)."""

    folds: int
    nll_raw: float
    nll_calibrated: float
    ece_raw: float
    ece_calibrated: float
    nll_gain_se: float = 0.0  # the standard error of the mean per-image NLL gain

    @property
    def helps(self) -> bool:
        """The NLL falls by more than two standard errors of its per-image gain, and the ECE falls."""
        return self.nll_raw - self.nll_calibrated > 2.0 * self.nll_gain_se and self.ece_calibrated < self.ece_raw

    def describe(self) -> str:
        return (f"fitted on {self.folds - 1}/{self.folds} of the images, T took the other 1/{self.folds} from NLL"
                f" {self.nll_raw:.4f} to {self.nll_calibrated:.4f} (standard error {self.nll_gain_se:.4f}) and ECE"
                f" {self.ece_raw:.4f} to {self.ece_calibrated:.4f}")

    def to_summary(self) -> dict[str, float]:
        return {"folds": self.folds, "nll_raw": self.nll_raw, "nll_calibrated": self.nll_calibrated,
                "nll_gain_se": self.nll_gain_se, "ece_raw": self.ece_raw, "ece_calibrated": self.ece_calibrated,
                "helps": self.helps}


@dataclass
class Calibration:
    """A fitted temperature and what it did on the images it was fitted on."""

    temperature: float
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    note: str = ""
    held_out: HeldOutCheck | None = None

    @property
    def at_bound(self) -> bool:
        return abs(abs(np.log(self.temperature)) - LOG_T_BOUND) < 1e-6

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's ``"calibration"`` entry: what inference needs, and where it came from."""
        return {"temperature": self.temperature, "fitted_on": "validation", "n": self.n,
                "probabilities": "softmax(logits / temperature)"}


def temperature_for_confidence(logits: np.ndarray, target: float) -> float:
    """The temperature at which the mean top probability of ``softmax(logits / T)`` is
    ``target`` (it falls as T rises): bisection on ``log T`` within the bounds."""
    low, high = -LOG_T_BOUND, LOG_T_BOUND
    for _ in range(60):
        middle = (low + high) / 2
        if softmax(logits, float(np.exp(middle))).max(axis=1).mean() > target:
            low = middle  # too confident: a higher temperature
        else:
            high = middle
    return float(np.exp((low + high) / 2))


def _fit(logits: np.ndarray, labels: np.ndarray) -> tuple[float, str]:
    """The temperature (and a note) for ``logits``: the NLL minimum, or Laplace's rule when every
    image is right (see ``calibrate``)."""
    n = len(labels)
    if n and bool((logits.argmax(axis=1) == labels).all()):
        target = (n + 1) / (n + 2)
        return temperature_for_confidence(logits, target), (
            f"no mistakes on the {n} validation images, so the NLL has no minimum: T sets the mean top probability to"
            f" (n + 1) / (n + 2) = {target:.3f} (Laplace's rule of succession)")
    return fit_temperature(logits, labels), ""


def held_out_check(logits: np.ndarray, labels: np.ndarray, folds: int = CHECK_FOLDS, seed: int = 0) -> HeldOutCheck:
    """Fit the temperature on all folds but one, apply it to the one left out, for each of
    ``folds`` seeded random folds; the pooled held-out NLL and ECE with and without it, and the
    standard error of the per-image NLL gain (on 60 images a gain of a few thousandths is noise)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    raw, calibrated = softmax(logits), np.empty((len(labels), logits.shape[1]))
    for held in np.array_split(order, folds):
        fit_on = np.setdiff1d(order, held)
        calibrated[held] = softmax(logits[held], _fit(logits[fit_on], labels[fit_on])[0])
    rows = np.arange(len(labels))
    gain = np.log(np.clip(calibrated[rows, labels], 1e-12, 1.0)) - np.log(np.clip(raw[rows, labels], 1e-12, 1.0))
    se = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else float("inf")
    return HeldOutCheck(folds, negative_log_likelihood(raw, labels), negative_log_likelihood(calibrated, labels),
                        expected_calibration_error(raw, labels), expected_calibration_error(calibrated, labels), se)


def calibrate(logits: np.ndarray, labels: np.ndarray, *, check_folds: int = CHECK_FOLDS) -> Calibration:
    """Fit the temperature on ``logits`` / ``labels`` and measure NLL and ECE before and after.

    Where every image is classified right the NLL has no minimum: it keeps falling as T shrinks
    towards 0, which would make every answer certain. Then T makes the mean top probability
    Laplace's estimate of the accuracy, ``(n + 1) / (n + 2)`` for n right of n (``note`` says so).

    With ``check_folds`` (default 5) the temperature must also earn its place on images it was not
    fitted on (``held_out_check``): unless it lowers the held-out NLL by more than two standard
    errors of the per-image gain, and the held-out ECE too, T = 1.
    Measured on the six folders of ``benchmarks/transfer.py``: without the check, T fitted on
    56-300 validation or out-of-fold images made test ECE worse on four of them (NEU steel
    0.0096 -> 0.0182, RSSCN7 0.028 -> 0.045, DTD 0.045 -> 0.051, ants/bees 0.033 -> 0.035)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    n = len(labels)
    temperature, note = _fit(logits, labels)
    check = held_out_check(logits, labels, check_folds) if check_folds and n >= 2 * check_folds else None
    if check is not None and not check.helps:
        temperature, note = 1.0, f"T = 1: the fitted T = {temperature:.3f} did not carry over ({check.describe()})"
    before, after = softmax(logits), softmax(logits, temperature)
    return Calibration(temperature, n, negative_log_likelihood(before, labels), negative_log_likelihood(after, labels),
                       expected_calibration_error(before, labels), expected_calibration_error(after, labels), note, check)


def manifest_temperature(manifest: dict[str, Any]) -> float:
    """The temperature a run's manifest records; 1.0 for runs written before calibration existed."""
    return float((manifest.get("calibration") or {}).get("temperature", 1.0))
