"""What ``predict`` answers for a multi-label run (issue 26): the set of labels whose probability
reaches its threshold, not one class.

A multi-label head scores each label on its own: its probability is ``sigmoid(logit)`` (the rows
do not sum to 1, and an image may have every label or none), and the label is predicted where the
probability reaches the threshold the run chose for it on validation (``manifest_task``). There
is no temperature and no rejection rule: an image the model finds nothing in gets an empty set,
which is the multi-label way of saying "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .engine.evaluation.multilabel_metrics import predictions
from .errors import DataError


@dataclass
class LabelSetPrediction:
    """One image's answer under multi-label: ``labels`` are those whose probability reaches their
    threshold, most probable first (empty when none does), with their ``probabilities``;
    ``scores`` holds every label's probability (each a sigmoid: they need not sum to 1); ``top_k``
    the k most probable labels with theirs, whatever their thresholds."""

    labels: list[str]
    probabilities: dict[str, float]
    scores: dict[str, float]
    top_k: list[tuple[str, float]]


def label_sets(
    probs: np.ndarray, classes: Sequence[str], thresholds: np.ndarray, top_k: int = 1
) -> list[LabelSetPrediction]:
    """Each row of ``probs`` ``[N, L]`` as a ``LabelSetPrediction``: a label is in the set where
    its probability reaches its threshold (``multilabel_metrics.predictions``, what the run's F1
    was measured with); ranks are by probability, ties in ``classes`` order."""
    passed = predictions(probs, thresholds)
    k = min(top_k, len(classes))
    out = []
    for row, flags in zip(probs, passed):
        order = np.argsort(-row, kind="stable")
        ranked = [(classes[i], float(row[i])) for i in order]
        chosen = [(name, p) for (name, p), i in zip(ranked, order) if flags[i]]
        out.append(LabelSetPrediction([name for name, _ in chosen], dict(chosen),
                                      {name: float(p) for name, p in zip(classes, row)}, ranked[:k]))
    return out


def refuse_reject(where: str | Path | None) -> DataError:
    """``reject`` asked of a multi-label model: one line saying what stands in for it."""
    return DataError(
        f"--reject: {where or 'this model'} is a multi-label run: each label has its own threshold instead of a"
        " rejection rule (an image no label reaches gets none); leave out --reject"
    )


def mean_thresholds(thresholds: Sequence[np.ndarray]) -> np.ndarray:
    """An ensemble's thresholds: the mean of its members', label by label. A stand-in: each was
    chosen for its own run's probabilities, and thresholds chosen on the ensemble's own validation
    probabilities would fit its averaged probabilities better."""
    return np.mean(np.stack([np.asarray(t, dtype=np.float64) for t in thresholds]), axis=0)
