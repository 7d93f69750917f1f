"""Out-of-fold probes and the confident-learning ranking, on generated features."""

from __future__ import annotations

import numpy as np

from transferkit.workbench.audit_scores import (
    class_thresholds,
    confident_issues,
    held_out_probabilities,
    out_of_fold_probabilities,
    rank_label_issues,
)


def _blobs(n_per_class: int = 60, classes: int = 4, dims: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, size=(classes, dims))
    labels = np.repeat(np.arange(classes), n_per_class)
    return centres[labels] + rng.normal(0, 0.8, size=(len(labels), dims)), labels


def test_flipped_labels_rank_first_and_get_their_true_class_suggested():
    features, truth = _blobs()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(truth), 12, replace=False)
    labels = truth.copy()
    labels[flipped] = (truth[flipped] + rng.integers(1, 4, len(flipped))) % 4
    probs = out_of_fold_probabilities(features, labels, 4, folds=5, seed=0)
    assert np.allclose(probs.sum(axis=1), 1.0)
    issues = rank_label_issues(probs, labels, 4)
    assert len(set(issues.order[:12].tolist()) & set(flipped.tolist())) >= 10
    flagged = set(issues.flagged.tolist())
    assert len(flagged & set(flipped.tolist())) >= 0.8 * len(flagged) > 0
    assert (issues.suggested[flipped] == truth[flipped]).mean() >= 0.9
    assert np.array_equal(issues.order, np.argsort(issues.self_confidence, kind="stable"))
    assert np.array_equal(issues.flagged, issues.order[: int(issues.confident.sum())])


def test_clean_labels_flag_few_and_the_probes_are_seeded():
    features, labels = _blobs()
    first = out_of_fold_probabilities(features, labels, 4, seed=3)
    assert np.array_equal(first, out_of_fold_probabilities(features, labels, 4, seed=3))
    assert len(rank_label_issues(first, labels, 4).flagged) <= 0.03 * len(labels)


def test_confident_learning_needs_a_low_given_label_and_another_confident_class():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.3, 0.6, 0.1], [0.5, 0.5, 0.0], [0.35, 0.3, 0.35]])
    labels = np.array([0, 1, 0, 1, 2])
    thresholds = class_thresholds(probs, labels, 3)
    assert np.allclose(thresholds, [0.6, 0.65, 0.35])
    # image 2: p(0) = 0.3 < 0.6 and p(1) = 0.6 < 0.65 -> no; image 3: p(1) = 0.5 < 0.65, p(0) = 0.5 < 0.6 -> no
    assert confident_issues(probs, labels, thresholds).tolist() == [False, False, False, False, False]
    assert confident_issues(probs, labels, np.array([0.3, 0.65, 0.35])).tolist() == [False, False, False, True, False]


def test_small_classes_and_held_out_images_are_scored():
    features, labels = _blobs(n_per_class=20, classes=3)
    features, labels = features[:43], labels[:43]  # class 2 keeps 3 images, fewer than the folds
    probs = out_of_fold_probabilities(features, labels, 3, folds=5)
    assert probs.shape == (43, 3) and np.allclose(probs.sum(axis=1), 1.0)
    features, labels = _blobs(n_per_class=25, classes=3)
    train = np.arange(len(labels)) % 5 != 0
    held = held_out_probabilities(features[train], labels[train], features[~train], 3)
    assert held.shape == (15, 3) and (held.argmax(axis=1) == labels[~train]).mean() >= 0.8
    assert held_out_probabilities(features, labels, features[:0], 3).shape == (0, 3)
