"""The numpy port of scikit-learn's stratified ``train_test_split`` gives the very same indices."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from transferkit.data.stratified import stratified_train_test


@pytest.mark.parametrize("case", range(60))
def test_the_same_indices_as_scikit_learn(case):
    rng = np.random.default_rng(case)
    classes = int(rng.integers(2, 15))
    counts = rng.integers(2, 60, size=classes)
    targets = rng.permutation(np.repeat(np.arange(classes), counts))
    fraction = float(rng.choice([0.1, 0.15, 0.2, 0.25, 0.3, 0.5]))
    indices = np.arange(len(targets)) + 1000
    if np.ceil(fraction * len(targets)) < classes or len(targets) - np.ceil(fraction * len(targets)) < classes:
        with pytest.raises(ValueError):
            stratified_train_test(indices, targets, fraction, seed=case)
        return
    expected = train_test_split(indices, test_size=fraction, random_state=case, stratify=targets)
    got = stratified_train_test(indices, targets, fraction, seed=case)
    assert [g.tolist() for g in got] == [e.tolist() for e in expected]


def test_string_labels_and_a_class_of_one_refused():
    targets = np.array(["b", "a", "b", "a", "c", "c", "a", "b", "c", "a"])
    expected = train_test_split(np.arange(10), test_size=0.3, random_state=3, stratify=targets)
    assert [g.tolist() for g in stratified_train_test(np.arange(10), targets, 0.3, 3)] == [e.tolist() for e in expected]
    with pytest.raises(ValueError):
        stratified_train_test(np.arange(5), np.array([0, 0, 1, 1, 2]), 0.4, 0)
