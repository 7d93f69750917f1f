"""The rejection rule: the threshold for a stated false-rejection rate holds on held-out
in-distribution images; AUROC against scikit-learn; unknown images choose the threshold; the
trade-off curve; the manifest round trip."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from transferkit.engine.final.rejection import MAX_STORED, RejectionRule, auroc, fit_rejection, max_probability, tradeoff_curve


def _known_scores(n: int, seed: int) -> np.ndarray:
    """Top probabilities of in-distribution images: mostly near 1, a tail of doubtful ones."""
    return 1.0 - np.random.default_rng(seed).beta(0.6, 6.0, size=n)


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.1, 0.2])
@pytest.mark.parametrize("n_val", [400, 5000])  # 5000 > MAX_STORED: the manifest keeps quantiles only
def test_the_threshold_meets_the_stated_false_rejection_rate_on_held_out_images(rate, n_val):
    rule = fit_rejection(_known_scores(n_val, seed=1))
    assert len(rule.quantiles) == min(n_val, MAX_STORED)
    stored = RejectionRule.from_manifest({"rejection": rule.to_manifest()})  # what predict reads back
    held_out = _known_scores(20000, seed=2)
    realised = (held_out < stored.threshold_for(rate)).mean()
    tolerance = 3 * np.sqrt(rate * (1 - rate) / n_val) + 0.002  # the validation sample's own noise
    assert abs(realised - rate) <= tolerance
    assert abs(stored.rate_at(stored.threshold_for(rate)) - rate) <= 1.0 / min(n_val, MAX_STORED) + 1e-9


def test_without_unknown_images_the_default_is_five_percent():
    scores = _known_scores(1000, seed=3)
    rule = fit_rejection(scores)
    assert rule.threshold == pytest.approx(np.quantile(scores, 0.05))
    assert "false-rejection rate 0.05" in rule.chosen_by
    with pytest.raises(ValueError):
        rule.threshold_for(1.5)


def test_unknown_images_choose_the_threshold_that_separates_them_best():
    known = _known_scores(1000, seed=4)
    unknown = np.random.default_rng(5).uniform(0.2, 0.7, size=300)
    rule = fit_rejection(known, unknown)
    assert "unknown images" in rule.chosen_by
    j = (unknown < rule.threshold).mean() - (known < rule.threshold).mean()
    for t in np.linspace(0.0, 1.0, 201):  # no threshold does better
        assert (unknown < t).mean() - (known < t).mean() <= j + 1e-12
    assert 0.6 < rule.threshold <= 0.71


def test_auroc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    known = np.round(rng.uniform(0.3, 1.0, 200), 2)
    unknown = np.round(rng.uniform(0.0, 0.8, 150), 2)
    expected = roc_auc_score(np.r_[np.ones(200), np.zeros(150)], np.r_[known, unknown])
    assert auroc(known, unknown) == pytest.approx(expected)
    assert auroc(np.array([0.9, 0.8]), np.array([0.1])) == 1.0 and np.isnan(auroc(known, np.zeros(0)))


def test_the_tradeoff_curve_rejects_the_lowest_scores_first():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.55, 0.45], [0.8, 0.2]])
    scores = max_probability(probs)
    assert scores.tolist() == [0.9, 0.6, 0.55, 0.8]
    correct = np.array([True, False, False, True])
    rejected, accuracy = tradeoff_curve(scores, correct)
    assert rejected.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert accuracy.tolist() == [0.5, 2 / 3, 1.0, 1.0]
