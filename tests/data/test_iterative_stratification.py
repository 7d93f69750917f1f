"""Iterative stratification: every image in exactly one part, sizes within one image of the
request, every label with enough positives in every part, label proportions closer to the
request than a random split's, the same parts for a seed and other parts for another."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.data.iterative_stratification import (
    iterative_folds,
    iterative_split,
    part_sizes,
    proportion_gap,
)

FRACTIONS = (0.7, 0.1, 0.2)  # train, val, test


def imbalanced(n: int = 600, labels: int = 12, seed: int = 0) -> np.ndarray:
    """Label frequencies from about 40% down to a handful of images, correlated through a few
    shared causes (as "outdoor" goes with "sky"), and some images with no label."""
    rng = np.random.default_rng(seed)
    causes = rng.normal(size=(n, 3))
    mix = rng.normal(size=(3, labels))
    frequency = np.geomspace(0.4, 3 / n, labels)
    score = causes @ mix + rng.normal(size=(n, labels))
    cut = np.array([np.quantile(score[:, j], 1 - frequency[j]) for j in range(labels)])
    return (score > cut).astype(np.uint8)


def random_split(n: int, fractions, seed: int) -> list[np.ndarray]:
    bounds = np.cumsum(part_sizes(n, fractions))[:-1]
    return [np.sort(p) for p in np.split(np.random.default_rng(seed).permutation(n), bounds)]


@pytest.mark.parametrize("n, fractions", [(10, (0.7, 0.2, 0.1)), (7, (0.5, 0.5)), (101, (0.25,) * 4), (3, (0.34, 0.33, 0.33))])
def test_part_sizes_sum_to_n_and_are_within_one(n, fractions):
    sizes = part_sizes(n, fractions)
    assert sizes.sum() == n and (np.abs(sizes - np.asarray(fractions) * n) < 1).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parts_are_disjoint_complete_and_of_the_requested_sizes(seed):
    y = imbalanced(seed=seed)
    parts = iterative_split(y, FRACTIONS, seed)
    joined = np.concatenate(parts)
    assert len(joined) == len(y) and len(np.unique(joined)) == len(y)
    assert all((np.diff(p) > 0).all() for p in parts)
    for part, fraction in zip(parts, FRACTIONS):
        assert abs(len(part) - fraction * len(y)) < 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_label_with_enough_positives_is_in_every_part(seed):
    y = imbalanced(seed=seed)
    counts = y.sum(axis=0)
    assert counts.min() == 3  # rare labels are what this tests: the paper would put all 3 positives in train
    for part in iterative_split(y, FRACTIONS, seed):
        assert (y[part].sum(axis=0)[counts >= len(FRACTIONS)] > 0).all()
    for _, held in iterative_folds(y, 5, seed):
        assert (y[held].sum(axis=0)[counts >= 5] > 0).all()


def test_label_proportions_are_closer_to_the_request_than_a_random_splits():
    """On every label, and by far on labels with ten or more positives (a label of 3 positives
    split 1 / 1 / 1 for coverage is 0.2 off its 0.7 / 0.1 / 0.2 shares, by design)."""
    ours, theirs = np.zeros((4, 2)), np.zeros((4, 2))
    for seed in range(4):
        y = imbalanced(seed=seed)
        common = y.sum(axis=0) >= 10
        mine, random = iterative_split(y, FRACTIONS, seed), random_split(len(y), FRACTIONS, seed)
        ours[seed] = proportion_gap(y, mine, FRACTIONS), proportion_gap(y[:, common], mine, FRACTIONS)
        theirs[seed] = proportion_gap(y, random, FRACTIONS), proportion_gap(y[:, common], random, FRACTIONS)
    ours, theirs = ours.mean(axis=0), theirs.mean(axis=0)
    print(f"mean |share - fraction|, all labels: iterative {ours[0]:.4f}, random {theirs[0]:.4f};"
          f" labels with >= 10 positives: iterative {ours[1]:.4f}, random {theirs[1]:.4f}")
    assert ours[0] < 0.6 * theirs[0] and ours[1] < 0.3 * theirs[1], (ours, theirs)


def test_three_positives_at_0_7_0_1_0_2_go_one_to_each_part():
    y = np.zeros((50, 2), dtype=np.uint8)
    y[[3, 17, 40], 0] = 1
    y[::2, 1] = 1
    for seed in range(5):
        assert [int(y[p, 0].sum()) for p in iterative_split(y, FRACTIONS, seed)] == [1, 1, 1]


def test_common_labels_are_split_almost_exactly():
    y = imbalanced(seed=5)
    common = y.sum(axis=0) >= 100
    parts = iterative_split(y, FRACTIONS, 5)
    for part, fraction in zip(parts, FRACTIONS):
        shares = y[part].sum(axis=0)[common] / y.sum(axis=0)[common]
        assert np.abs(shares - fraction).max() < 0.03, shares


def test_deterministic_for_a_seed_and_different_for_another():
    y = imbalanced(seed=1)
    first = iterative_split(y, FRACTIONS, seed=7)
    again = iterative_split(y, FRACTIONS, seed=7)
    other = iterative_split(y, FRACTIONS, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_folds_hold_each_image_out_once():
    y = imbalanced(n=203, seed=3)
    folds = iterative_folds(y, 5, seed=0)
    held = np.concatenate([h for _, h in folds])
    assert sorted(held.tolist()) == list(range(203))
    for train, held_out in folds:
        assert len(np.intersect1d(train, held_out)) == 0 and len(train) + len(held_out) == 203
        assert len(held_out) in (40, 41)


def test_images_without_labels_and_a_matrix_without_positives():
    y = np.zeros((9, 2), dtype=np.uint8)
    parts = iterative_split(y, (0.5, 0.5), seed=0)
    assert sorted(len(p) for p in parts) == [4, 5]


@pytest.mark.parametrize("fractions", [(1.0,), (0.5, 0.4), (0.6, 0.5, -0.1), (0.5, 0.5, 0.0)])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ValueError, match="fractions"):
        iterative_split(np.ones((10, 2)), fractions)


def test_not_a_multi_hot_matrix_is_refused():
    with pytest.raises(ValueError):
        iterative_split(np.full((10, 2), 2), (0.5, 0.5))
    with pytest.raises(ValueError):
        iterative_split(np.ones((1, 2)), (0.5, 0.5))
