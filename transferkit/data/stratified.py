"""scikit-learn's ``train_test_split(..., stratify=y, random_state=seed)`` with a float
``test_size``, in numpy: the same indices for the same seed (``tests/data/test_stratified.py``
checks it against the installed scikit-learn), without importing scikit-learn and SciPy (over a
second on two cores), so that ``transferkit validate`` can count a recipe's splits at once.

It follows ``StratifiedShuffleSplit._iter_indices`` (scikit-learn 1.x): the train and test
counts per class by ``_approximate_mode`` (floors, then the largest remainders, ties drawn from
the seeded ``RandomState``), a seeded permutation within each class, then of each side.
"""

from __future__ import annotations

import math

import numpy as np


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def stratified_train_test(indices: np.ndarray, targets: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``train_test_split(indices, test_size=test_size, random_state=seed, stratify=targets)``.
    Every class needs two or more members and the test side at least one image a class (the
    caller checks; scikit-learn would raise)."""
    n_samples = len(targets)
    n_test = math.ceil(test_size * n_samples)
    n_train = n_samples - n_test
    classes, y_indices = np.unique(np.asarray(targets), return_inverse=True)
    class_counts = np.bincount(y_indices)
    if class_counts.min() < 2 or n_train < len(classes) or n_test < len(classes):
        raise ValueError("every class needs two images and each side one image a class")
    class_indices = np.split(np.argsort(y_indices, kind="mergesort"), np.cumsum(class_counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        permutation = rng.permutation(class_counts[i])
        members = class_indices[i].take(permutation, mode="clip")
        train.extend(members[: n_i[i]])
        test.extend(members[n_i[i] : n_i[i] + t_i[i]])
    train_order, test_order = rng.permutation(train), rng.permutation(test)
    return np.asarray(indices)[train_order], np.asarray(indices)[test_order]
