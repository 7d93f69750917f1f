"""Multi-label metrics (issue 26), in numpy: average precision per label and its macro and micro
means, subset accuracy, F1 at thresholds, and per-label thresholds chosen on validation.

Average precision is scikit-learn's ``average_precision_score`` (``tests`` check it column by
column, ties included): the images ranked by score, tied scores as one step, the precision at each
step weighted by the recall it adds. It is the headline figure because it needs no threshold: a
multi-label head's sigmoids are rarely calibrated per label, and a fixed 0.5 makes rare labels look
absent. A label with no positive image has no average precision (nor F1): it is NaN, left out of
the macro means and named, rather than counted as 0 (which would punish a test split for a label it
happens not to contain) or as 1. The micro means pool every (image, label) pair, so they count
such labels' false positives.

Thresholds are chosen per label on validation, by F1 or by a precision target ("at least 90% of
what is flagged is right": the lowest threshold that keeps validation precision at the target,
so as much recall as that allows). A label that cannot reach the target gets its most precise
threshold instead and is named, so no one reads the target as met. A chosen threshold sits halfway
between the validation score it keeps and the next lower one: the same validation predictions,
and a margin on both sides for new images. The lowest threshold that meets the target is, on a
noisy precision curve, often one where validation was lucky: new images see the target on average
but rare labels fall short (the tests, 1,500 validation images: at a target of 0.8, held-out
precision averaged 0.80 over 18 labels, the worst 0.74; with weaker scores a label with about 80
validation positives got 0.66). Ask for a margin above the precision that must hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ...data.sources import capped


def _checked(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if s.ndim == 1:
        s, t = s[:, None], t.reshape(-1, 1)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"scores {s.shape} and targets {t.shape} must both be [N, L]")
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN or infinite values")
    if not np.isin(t, (0, 1)).all():
        raise ValueError("targets must be a multi-hot matrix of 0 and 1")
    return s, t.astype(bool)


def ranked_counts(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one label: its distinct scores from high to low, and the true and false positives when
    every image scoring at least that much is flagged (tied images enter together)."""
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], targets[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last image of each run of equal scores
    tps = np.cumsum(t)[ends]
    return s[ends], tps, ends + 1 - tps


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``[L]`` average precision of each column of ``scores`` against multi-hot ``targets``
    (``[N, L]``; a single label may be ``[N]``); NaN for a label with no positive image."""
    s, t = _checked(scores, targets)
    out = np.full(s.shape[1], np.nan)
    for j in range(s.shape[1]):
        positives = t[:, j].sum()
        if positives:
            _, tps, fps = ranked_counts(s[:, j], t[:, j])
            out[j] = float(np.sum(np.diff(tps, prepend=0) / positives * tps / (tps + fps)))
    return out


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """Macro mAP (the mean over labels with a positive), micro mAP (every image-label pair as one
    ranking), each label's AP, and the indices of labels left out for having no positive."""
    s, t = _checked(scores, targets)
    per_label = average_precision(s, t)
    present = ~np.isnan(per_label)
    return {
        "macro": float(per_label[present].mean()) if present.any() else float("nan"),
        "micro": float(average_precision(s.ravel(), t.ravel())[0]) if t.any() else float("nan"),
        "per_label": per_label,
        "without_positives": np.flatnonzero(~present).tolist(),
    }


def predictions(probs: np.ndarray, thresholds: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """``[N, L]`` booleans: each label is predicted where its score reaches its threshold."""
    return np.asarray(probs) >= np.asarray(thresholds, dtype=np.float64)


def subset_accuracy(predicted: np.ndarray, targets: np.ndarray) -> float:
    """The share of images whose predicted label set is exactly right (the strictest measure)."""
    return float((np.asarray(predicted, dtype=bool) == np.asarray(targets, dtype=bool)).all(axis=1).mean())


def f1_scores(predicted: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """Per-label F1 (NaN for a label with no positive, as for AP), macro F1 over the labels with
    a positive, and micro F1 over every image-label pair."""
    p, t = np.asarray(predicted, dtype=bool), np.asarray(targets, dtype=bool)
    tp, fp, fn = (p & t).sum(axis=0), (p & ~t).sum(axis=0), (~p & t).sum(axis=0)
    present = t.sum(axis=0) > 0
    per_label = np.full(p.shape[1], np.nan)
    per_label[present] = 2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])
    pooled = 2 * tp.sum() + fp.sum() + fn.sum()
    return {
        "per_label": per_label,
        "macro": float(per_label[present].mean()) if present.any() else float("nan"),
        "micro": float(2 * tp.sum() / pooled) if pooled else float("nan"),
    }


@dataclass
class ThresholdChoice:
    """Per-label thresholds chosen on validation, with what they achieved there and which labels
    could not be served: ``unmet`` missed the precision target, ``without_positives`` had no
    positive image (they keep ``default``)."""

    thresholds: np.ndarray
    rule: str
    precision: np.ndarray
    recall: np.ndarray
    unmet: list[int] = field(default_factory=list)
    without_positives: list[int] = field(default_factory=list)

    def message(self, labels: Sequence[str] | None = None) -> str:
        """One line for a run's log, "" when every label was served."""
        def names(indices: list[int]) -> str:
            return capped([labels[j] for j in indices] if labels is not None else indices)

        notes = []
        if self.unmet:
            notes.append(f"{len(self.unmet)} label(s) reach no {self.rule} on validation: {names(self.unmet)}"
                         " (each keeps its most precise threshold)")
        if self.without_positives:
            notes.append(f"{len(self.without_positives)} label(s) have no positive validation image: "
                         f"{names(self.without_positives)} (default threshold kept)")
        return "; ".join(notes)


def choose_thresholds(
    probs: np.ndarray, targets: np.ndarray, rule: str | float = "f1", default: float = 0.5,
) -> ThresholdChoice:
    """Per-label thresholds on validation ``probs`` ``[N, L]``. ``rule="f1"``: each label's best
    F1 (ties: the higher threshold). A number ``p`` in (0, 1]: the lowest threshold whose precision
    is at least ``p``; where none is, the most precise one (ties: the lower), and the label is
    listed in ``unmet``. Labels with no positive keep ``default``."""
    s, t = _checked(probs, targets)
    if rule != "f1" and not (isinstance(rule, (int, float)) and 0.0 < float(rule) <= 1.0):
        raise ValueError(f'rule must be "f1" or a precision target in (0, 1], got {rule!r}')
    labels = s.shape[1]
    thresholds, precision, recall = np.full(labels, float(default)), np.full(labels, np.nan), np.full(labels, np.nan)
    unmet, without = [], []
    for j in range(labels):
        positives = int(t[:, j].sum())
        if positives == 0:
            without.append(j)
            continue
        values, tps, fps = ranked_counts(s[:, j], t[:, j])
        prec = tps / (tps + fps)
        if rule == "f1":
            k = int(np.argmax(2 * tps / (tps + fps + positives)))  # the first (highest threshold) of ties
        else:
            meets = np.flatnonzero(prec >= float(rule) - 1e-12)
            if len(meets):
                k = int(meets[-1])
            else:
                k = int(np.flatnonzero(prec == prec.max())[-1])
                unmet.append(j)
        thresholds[j] = (values[k] + values[k + 1]) / 2 if k + 1 < len(values) else values[k]
        precision[j], recall[j] = prec[k], tps[k] / positives
    name = "f1" if rule == "f1" else f"precision {float(rule):g}"
    return ThresholdChoice(thresholds, name, precision, recall, unmet, without)


def multilabel_metrics(
    probs: np.ndarray, targets: np.ndarray, labels: Sequence[str], thresholds: float | Sequence[float] | np.ndarray = 0.5,
) -> dict[str, Any]:
    """Every figure of a split in one JSON-ready dict (NaN written as None), as
    ``metrics.classification_metrics`` is for one label per image."""
    s, t = _checked(probs, targets)
    if s.shape[1] != len(labels):
        raise ValueError(f"{s.shape[1]} score columns for {len(labels)} labels")
    ap = mean_average_precision(s, t)
    predicted = predictions(s, thresholds)
    f1 = f1_scores(predicted, t)

    def plain(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    return {
        "n": int(len(s)),
        "macro_map": plain(ap["macro"]),
        "micro_map": plain(ap["micro"]),
        "macro_f1": plain(f1["macro"]),
        "micro_f1": plain(f1["micro"]),
        "subset_accuracy": subset_accuracy(predicted, t),
        "labels_without_positives": [labels[j] for j in ap["without_positives"]],
        "per_label_ap": {name: plain(v) for name, v in zip(labels, ap["per_label"])},
        "per_label_f1": {name: plain(v) for name, v in zip(labels, f1["per_label"])},
        "thresholds": np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(labels),)).tolist(),
    }
