"""Classification metrics of probabilities against labels, for 2 to many classes."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.engine.evaluation.metrics import classification_metrics


def _probs(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    logits = rng.normal(size=(n, c))
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


@pytest.mark.parametrize("classes, topk", [(2, None), (3, "top2"), (6, "top5"), (12, "top5")])
def test_metrics_for_any_number_of_classes(classes: int, topk: str | None) -> None:
    rng = np.random.default_rng(0)
    probs, targets = _probs(rng, 50, classes), rng.integers(0, classes, 50)
    m = classification_metrics(probs, targets, [f"c{i}" for i in range(classes)])
    assert m["top1"] == pytest.approx(float((probs.argmax(1) == targets).mean()))
    assert [k for k in m if k.startswith("top") and k != "top1"] == ([topk] if topk else [])
    if topk:
        k = int(topk[3:])
        in_top = (np.argsort(-probs, axis=1)[:, :k] == targets[:, None]).any(1).mean()
        assert m[topk] == pytest.approx(float(in_top))
    assert np.array(m["confusion_matrix"]).sum() == 50


def test_per_class_accuracy_is_none_for_an_absent_class() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    m = classification_metrics(probs, np.array([0, 0]), ["a", "b", "c"])
    assert m["per_class_accuracy"] == {"a": 0.5, "b": None, "c": None}


def test_macro_f1_averages_over_the_classes_present() -> None:
    """Evaluating on 3 of 12 classes, all right: macro-F1 1.0, not 3/12 (the absent classes have no F1)."""
    probs = np.eye(12)[[0, 1, 2, 0, 1, 2]] * 0.9 + 0.1 / 12
    m = classification_metrics(probs, np.array([0, 1, 2, 0, 1, 2]), [f"c{i}" for i in range(12)])
    assert m["top1"] == 1.0 and m["macro_f1"] == 1.0 and m["classes_present"] == 3
