"""An "unknown" answer: a rule that rejects an image whose score (the calibrated maximum class
probability) is below a threshold, fitted on the validation split.

The threshold for a false-rejection rate ``r`` is the ``r``-quantile of the validation images'
scores, so about ``r`` of in-distribution images fall below it. The manifest keeps those scores
(at most ``MAX_STORED`` quantiles of them), so ``predict --reject RATE`` can state any rate after
training. With images of "none of these" (``data.unknown``) the run's default threshold is the
one that best separates them from validation (Youden's J: the largest rejected-unknown fraction
minus false-rejection rate), and the AUROC says how well the score separates them at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_RATE = 0.05
MAX_STORED = 1001
SCORE = "max_probability"


def max_probability(probs: np.ndarray) -> np.ndarray:
    """The rejection score: each image's top class probability (higher: more likely known)."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs.max(axis=1) if len(probs) else np.zeros(0)


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Area under the ROC curve of telling ``known`` scores (higher) from ``unknown`` ones: the
    probability that a random known image scores above a random unknown one (ties count half)."""
    known, unknown = np.asarray(known, dtype=np.float64), np.asarray(unknown, dtype=np.float64)
    if len(known) == 0 or len(unknown) == 0:
        return float("nan")
    both = np.concatenate([known, unknown])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    sorted_scores = both[order]
    # average ranks over ties (1-based)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    known_rank_sum = ranks[: len(known)].sum()
    return float((known_rank_sum - len(known) * (len(known) + 1) / 2.0) / (len(known) * len(unknown)))


def tradeoff_curve(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rejecting the lowest scores first: for k = 0 .. N-1 images rejected, the fraction rejected
    and the accuracy on the images accepted (the selective-classification curve)."""
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    n = len(scores)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    kept_correct = np.cumsum(correct[np.argsort(-scores, kind="stable")])  # best-scored first
    accepted = np.arange(n, 0, -1)
    return (n - accepted) / n, kept_correct[accepted - 1] / accepted


@dataclass
class RejectionRule:
    """Validation scores of in-distribution images, and the run's default threshold."""

    quantiles: np.ndarray  # sorted validation scores (or MAX_STORED evenly spaced quantiles of them)
    n: int
    threshold: float  # the default: at DEFAULT_RATE, or chosen with the unknown images
    chosen_by: str

    def threshold_for(self, rate: float) -> float:
        """The score below which about ``rate`` of the validation images fall."""
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"false-rejection rate {rate}: give a number in [0, 1)")
        return float(np.quantile(self.quantiles, rate))

    def rate_at(self, threshold: float) -> float:
        """The validation false-rejection rate of a threshold."""
        return float((self.quantiles < threshold).mean()) if len(self.quantiles) else float("nan")

    def to_manifest(self) -> dict[str, Any]:
        return {"score": SCORE, "threshold": self.threshold, "chosen_by": self.chosen_by, "n": self.n,
                "validation_scores": [round(float(q), 6) for q in self.quantiles],
                "rule": "unknown when the calibrated top probability is below the threshold"}

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> "RejectionRule | None":
        """The rule a run recorded; None for runs written before rejection existed."""
        entry = manifest.get("rejection")
        if not entry:
            return None
        return cls(np.asarray(entry["validation_scores"], dtype=np.float64), int(entry["n"]), float(entry["threshold"]),
                   str(entry.get("chosen_by", "")))


def fit_rejection(val_scores: np.ndarray, unknown_scores: np.ndarray | None = None, rate: float = DEFAULT_RATE) -> RejectionRule:
    """The rule of validation scores: its default threshold at ``rate`` false rejection, or, with
    scores of unknown images, the threshold maximising Youden's J between the two."""
    scores = np.sort(np.asarray(val_scores, dtype=np.float64))
    stored = scores if len(scores) <= MAX_STORED else np.quantile(scores, np.linspace(0.0, 1.0, MAX_STORED))
    rule = RejectionRule(stored, len(scores), float("nan"), f"validation false-rejection rate {rate:g}")
    rule.threshold = rule.threshold_for(rate)
    if unknown_scores is not None and len(unknown_scores) and len(scores):
        unknown = np.asarray(unknown_scores, dtype=np.float64)
        candidates = np.unique(np.concatenate([scores, unknown, [np.inf]]))
        j = [(unknown < t).mean() - (scores < t).mean() for t in candidates]
        best = int(np.argmax(j))
        rule.threshold = float(candidates[best])
        rule.chosen_by = (f"the unknown images (Youden's J {j[best]:.3f}: {(unknown < rule.threshold).mean():.3f} of them rejected,"
                          f" {(scores < rule.threshold).mean():.3f} of validation)")
    return rule
