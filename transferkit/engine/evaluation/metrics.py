"""Classification metrics via scikit-learn: top-1, top-5, macro-F1, per-class accuracy, confusion."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, top_k_accuracy_score


def classification_metrics(probs: np.ndarray, targets: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of class probabilities ``[N, C]`` against integer targets ``[N]``."""
    labels = np.arange(len(classes))
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(targets, preds, labels=labels)
    support = cm.sum(axis=1)
    # macro-F1 over the classes the images belong to: a class with no image has no F1 to average
    # (evaluating on a subset of the classes must not count the others as zeros)
    present = labels[support > 0]
    per_class = np.divide(np.diag(cm), support, out=np.full(len(classes), np.nan), where=support > 0)
    # top-k only where it says more than top-1: k = 5, or C - 1 for fewer than 6 classes (none for 2)
    out: dict[str, Any] = {
        "n": int(len(targets)),
        "top1": float(accuracy_score(targets, preds)),
        "macro_f1": float(f1_score(targets, preds, labels=present, average="macro", zero_division=0)) if len(present) else 0.0,
        "classes_present": int(len(present)),
        "per_class_accuracy": {c: (None if np.isnan(a) else float(a)) for c, a in zip(classes, per_class)},
        "confusion_matrix": cm.tolist(),
    }
    k = min(5, len(classes) - 1)
    if k >= 2:
        out[f"top{k}"] = float(top_k_accuracy_score(targets, probs, k=k, labels=labels))
    return out
