"""Out-of-fold probes and the confident-learning ranking, on generated features."""

from __future__ import annotations

import numpy as np

from transferkit.workbench.audit.label_scores import (
    blend,
    blend_weight,
    centroid_probabilities,
    class_thresholds,
    confident_issues,
    held_out_probabilities,
    label_probabilities,
    out_of_fold_probabilities,
    rank_label_issues,
)
from transferkit.workbench.audit.similarity import power_normalised


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


def _moved(features, truth, moves, seed):
    rng = np.random.default_rng(seed)
    moved = rng.choice(len(truth), moves, replace=False)
    labels = truth.copy()
    classes = truth.max() + 1
    labels[moved] = (truth[moved] + rng.integers(1, classes, moves)) % classes
    return labels, set(moved.tolist())


def test_with_few_images_a_class_the_blend_ranks_moved_labels_far_above_the_probe():
    # 6 images in each of 8 classes, 3 labels moved: the probe alone (trained on 4/5 of 48 images)
    # misses half of them; the class means, blended in, find them
    probe_hits = blend_hits = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        centres = rng.normal(0, 1.0, size=(8, 256))
        truth = np.repeat(np.arange(8), 6)
        features = np.abs(centres[truth] + rng.normal(0, 1.5, size=(len(truth), 256)))
        labels, moved = _moved(features, truth, 3, seed + 100)
        rows = np.arange(len(labels))
        probe = out_of_fold_probabilities(features, labels, 8)
        blended, _, weight = label_probabilities(features, labels, 8, features[:0])
        assert np.allclose(blended.sum(axis=1), 1.0) and 0.0 < weight < 0.5  # the class means classify better here
        probe_hits += len(set(np.argsort(probe[rows, labels])[:3].tolist()) & moved)
        blend_hits += len(set(np.argsort(blended[rows, labels])[:3].tolist()) & moved)
    assert blend_hits >= 11 and blend_hits >= probe_hits + 4, (probe_hits, blend_hits)


def test_class_means_leave_each_training_image_out_of_its_own_class():
    features, labels = _blobs(n_per_class=5, classes=3, dims=8)
    labels = labels.copy()
    labels[0] = 2  # class 2 now has 6 images, class 0 four
    features = np.abs(features)
    probs = centroid_probabilities(features, labels, 3, temperature=0.1)
    unit = power_normalised(features).astype(np.float64)
    unit = unit - unit.mean(axis=0)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    i = 0  # by hand: the cosine of image 0 to each class mean, itself left out of class 2's
    means = [unit[(labels == k) & (np.arange(len(labels)) != i)].sum(axis=0) for k in range(3)]
    cos = np.array([unit[i] @ m / np.linalg.norm(m) for m in means]) / 0.1
    assert np.allclose(probs[i], np.exp(cos - cos.max()) / np.exp(cos - cos.max()).sum())
    queries = centroid_probabilities(features, labels, 3, features[:2])
    assert queries.shape == (2, 3) and np.allclose(queries.sum(axis=1), 1.0)
    single = labels.copy()
    single[single == 1] = 0
    single[5] = 1  # class 1 holds one image: left out of its own class, it scores 0 there
    assert centroid_probabilities(features, single, 3)[5, 1] == 0.0


def test_the_blend_weight_follows_which_classifier_gets_more_labels_right():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    right, wrong = np.eye(2)[labels], np.eye(2)[1 - labels]
    assert blend_weight(right, wrong, labels) > 0.85 and blend_weight(wrong, right, labels) < 0.15
    assert blend_weight(right, right, labels) == 0.5
    assert np.allclose(blend(right * 0.8 + 0.1, wrong * 0.8 + 0.1, 1.0), right * 0.8 + 0.1)
