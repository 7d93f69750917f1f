"""Multi-label metrics: average precision equal to scikit-learn's per label (ties included), its
macro and micro means, F1 and subset accuracy as scikit-learn's, labels without a positive left
out and named, and thresholds chosen for a precision target that hold on new images."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

from transferkit.engine.evaluation.multilabel_metrics import (
    average_precision,
    choose_thresholds,
    f1_scores,
    mean_average_precision,
    multilabel_metrics,
    predictions,
    subset_accuracy,
)


def _scored(n: int, labels: int = 6, seed: int = 0, ties: bool = True, signal: float = 1.5):
    """Multi-hot targets (prevalence 5% to 40%) and scores that rank positives higher, noisily
    (more surely for a larger ``signal``); rounded to two decimals when ``ties`` so that many
    images share a score."""
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.05, 0.4, labels)
    targets = (rng.random((n, labels)) < prevalence).astype(np.uint8)
    scores = 1 / (1 + np.exp(-(signal * np.where(targets == 1, 1.0, -1.0) + rng.normal(size=(n, labels)) * 1.5 - 1)))
    return (np.round(scores, 2) if ties else scores), targets


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [True, False])
def test_average_precision_is_scikit_learns_per_label_and_micro(seed, ties):
    scores, targets = _scored(300, seed=seed, ties=ties)
    ours = average_precision(scores, targets)
    theirs = average_precision_score(targets, scores, average=None)
    assert np.allclose(ours, theirs, rtol=0, atol=1e-12)
    means = mean_average_precision(scores, targets)
    assert means["macro"] == pytest.approx(average_precision_score(targets, scores, average="macro"), abs=1e-12)
    assert means["micro"] == pytest.approx(average_precision_score(targets, scores, average="micro"), abs=1e-12)


def test_heavy_ties_and_a_single_label():
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.1, 0.5])
    targets = np.array([1, 0, 1, 1, 0, 1, 0])
    assert average_precision(scores, targets)[0] == pytest.approx(average_precision_score(targets, scores), abs=1e-12)
    assert average_precision(np.full(7, 0.3), targets)[0] == pytest.approx(targets.mean())  # all tied: the prevalence


def test_a_label_without_positives_is_nan_left_out_of_the_macro_and_named():
    scores, targets = _scored(200, seed=1)
    targets[:, 2] = 0
    means = mean_average_precision(scores, targets)
    assert np.isnan(means["per_label"][2]) and means["without_positives"] == [2]
    others = [0, 1, 3, 4, 5]
    assert means["macro"] == pytest.approx(average_precision_score(targets[:, others], scores[:, others], average="macro"))
    assert means["micro"] == pytest.approx(average_precision_score(targets, scores, average="micro"))


@pytest.mark.parametrize("thresholds", [0.5, [0.3, 0.4, 0.5, 0.5, 0.6, 0.7]])
def test_f1_and_subset_accuracy_are_scikit_learns(thresholds):
    scores, targets = _scored(400, seed=2)
    predicted = predictions(scores, thresholds)
    f1 = f1_scores(predicted, targets)
    assert np.allclose(f1["per_label"], f1_score(targets, predicted, average=None, zero_division=0))
    assert f1["macro"] == pytest.approx(f1_score(targets, predicted, average="macro"))
    assert f1["micro"] == pytest.approx(f1_score(targets, predicted, average="micro"))
    assert subset_accuracy(predicted, targets) == pytest.approx(accuracy_score(targets, predicted))


def test_f1_of_a_label_without_positives_is_left_out_of_the_macro_but_counts_in_the_micro():
    scores, targets = _scored(200, seed=3)
    targets[:, 0] = 0
    predicted = predictions(scores, 0.5)
    assert predicted[:, 0].any()  # false positives on the empty label
    f1 = f1_scores(predicted, targets)
    assert np.isnan(f1["per_label"][0])
    assert f1["macro"] == pytest.approx(f1_score(targets, predicted, average="macro", labels=[1, 2, 3, 4, 5]))
    assert f1["micro"] == pytest.approx(f1_score(targets, predicted, average="micro"))


def test_thresholds_by_f1_are_each_labels_best_on_validation():
    scores, targets = _scored(300, seed=4)
    choice = choose_thresholds(scores, targets, "f1")
    got = f1_scores(predictions(scores, choice.thresholds), targets)["per_label"]
    for j in range(scores.shape[1]):
        best = max(f1_score(targets[:, j], scores[:, j] >= t) for t in np.unique(scores[:, j]))
        assert got[j] == pytest.approx(best)
    assert choice.unmet == [] and choice.message() == ""


def test_thresholds_for_a_precision_target_hold_on_a_larger_held_out_sample():
    target = 0.8
    ours, reached = [], []
    for seed in range(3):
        val_scores, val_targets = _scored(1500, seed=10 + seed, ties=False, signal=2.0)
        choice = choose_thresholds(val_scores, val_targets, target)
        assert choice.unmet == [] and (choice.precision >= target).all()
        test_scores, test_targets = _scored(20000, seed=100 + seed, ties=False, signal=2.0)
        predicted = predictions(test_scores, choice.thresholds)
        tp = (predicted & (test_targets == 1)).sum(0)
        ours.append(tp / predicted.sum(0))
        reached.append(choice.recall)
    precision = np.array(ours)
    print(f"held-out precision at a validation target of {target}: mean {precision.mean():.3f}, min {precision.min():.3f}"
          f" (validation recall {np.mean(reached):.2f})")
    assert abs(precision.mean() - target) < 0.04 and precision.min() > target - 0.1


def test_an_unreachable_target_keeps_the_most_precise_threshold_and_says_so():
    scores = np.array([[0.9, 0.8], [0.8, 0.7], [0.7, 0.6], [0.2, 0.1]])
    targets = np.array([[0, 1], [1, 0], [1, 0], [0, 0]])
    choice = choose_thresholds(scores, targets, 0.9)
    # label 0: precision 0 at 0.9, 1/2 at 0.8, 2/3 at 0.7 (the best), 2/4 at 0.2
    assert choice.unmet == [0] and choice.precision[0] == pytest.approx(2 / 3) and choice.thresholds[0] == pytest.approx(0.45)
    # label 1: precision 1 at 0.8: the lowest threshold that keeps it, halfway to the next score
    assert choice.precision[1] == 1.0 and choice.thresholds[1] == pytest.approx(0.75)
    assert choice.message(["cat", "dog"]) == ("1 label(s) reach no precision 0.9 on validation: 'cat'"
                                              " (each keeps its most precise threshold)")


def test_labels_without_positives_keep_the_default_and_are_named():
    scores, targets = _scored(100, seed=5)
    targets[:, 1] = 0
    choice = choose_thresholds(scores, targets, "f1", default=0.5)
    assert choice.without_positives == [1] and choice.thresholds[1] == 0.5
    assert "no positive validation image: 1" in choice.message()
    with pytest.raises(ValueError, match="rule"):
        choose_thresholds(scores, targets, 1.5)


def test_the_summary_names_everything_and_writes_nan_as_none():
    scores, targets = _scored(120, labels=3, seed=6)
    targets[:, 2] = 0
    out = multilabel_metrics(scores, targets, ["cat", "dog", "sky"], thresholds=[0.4, 0.5, 0.6])
    assert out["n"] == 120 and out["labels_without_positives"] == ["sky"]
    assert out["per_label_ap"]["sky"] is None and out["per_label_f1"]["sky"] is None
    assert out["macro_map"] == pytest.approx(average_precision_score(targets[:, :2], scores[:, :2], average="macro"))
    assert out["thresholds"] == [0.4, 0.5, 0.6]
    with pytest.raises(ValueError):
        multilabel_metrics(scores, targets, ["cat"])
    with pytest.raises(ValueError):
        average_precision(np.full((3, 2), np.nan), np.zeros((3, 2)))
