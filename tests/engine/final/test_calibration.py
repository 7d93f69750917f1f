"""Temperature scaling on generated miscalibrated logits: NLL and ECE fall on held-out images,
the argmax stays; ECE and the reliability bins against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.engine.final.calibration import (
    calibrate,
    expected_calibration_error,
    fit_temperature,
    manifest_temperature,
    negative_log_likelihood,
    reliability_bins,
    softmax,
)


def _miscalibrated(scale: float, n: int = 4000, classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) (so z is calibrated), and the logits ``scale * z`` a model
    would report: over-confident for scale > 1, under-confident below 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, classes))
    p = softmax(z)
    labels = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)  # one draw from each row's p
    return scale * z, labels


@pytest.mark.parametrize("scale", [3.0, 0.4])
def test_temperature_scaling_lowers_held_out_nll_and_ece_and_keeps_the_argmax(scale):
    logits, labels = _miscalibrated(scale)
    fit_on, held = slice(0, 2000), slice(2000, None)
    t = fit_temperature(logits[fit_on], labels[fit_on])
    assert t == pytest.approx(scale, rel=0.15)  # the scale the logits were stretched by
    before, after = softmax(logits[held]), softmax(logits[held], t)
    assert negative_log_likelihood(after, labels[held]) < negative_log_likelihood(before, labels[held]) - 0.02
    assert expected_calibration_error(after, labels[held]) < 0.5 * expected_calibration_error(before, labels[held])
    assert np.array_equal(after.argmax(axis=1), before.argmax(axis=1))


def test_calibrated_logits_keep_a_temperature_near_1_and_calibrate_reports_both_sides():
    logits, labels = _miscalibrated(1.0)
    result = calibrate(logits, labels)
    assert result.temperature == pytest.approx(1.0, abs=0.1)
    assert result.n == len(labels) and result.nll_after <= result.nll_before + 1e-9
    assert not result.at_bound
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0


@pytest.mark.parametrize("scale", [0.3, 1.0])
def test_with_no_validation_mistake_the_mean_confidence_becomes_laplaces_accuracy(scale):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=200)
    logits = scale * (8.0 * np.eye(5)[labels] + rng.normal(0.0, 0.5, size=(200, 5)))  # top probability ~0.77 or ~0.999
    right = logits.argmax(axis=1)  # every image classified right: the NLL falls as T -> 0
    result = calibrate(logits, right, check_folds=0)  # the fit itself, before the held-out check
    assert fit_temperature(logits, right) < min(result.temperature, 0.5)  # the NLL alone heads for certainty
    assert softmax(logits, result.temperature).max(axis=1).mean() == pytest.approx(201 / 202, abs=1e-6)
    assert not result.at_bound and "no mistakes" in result.note and "rule of succession" in result.note
    assert (result.temperature < 1.0) == (scale < 1.0)  # sharpened where under-confident, softened where over-confident


@pytest.mark.parametrize("scale", [3.0, 0.4])
def test_a_temperature_that_helps_held_out_images_is_kept(scale):
    logits, labels = _miscalibrated(scale, n=300)
    result = calibrate(logits, labels)
    assert result.held_out is not None and result.held_out.helps and result.held_out.folds == 5
    assert result.temperature == pytest.approx(scale, rel=0.25) and not result.note
    assert result.held_out.nll_calibrated < result.held_out.nll_raw and result.held_out.ece_calibrated < result.held_out.ece_raw


def test_a_temperature_that_does_not_carry_over_to_held_out_images_is_dropped():
    # confident and right on all 60 images: Laplace's rule would soften every answer to 61/62;
    # on the folds left out, the raw probabilities are better, so T stays 1
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=60)
    logits = 8.0 * np.eye(5)[labels] + rng.normal(0.0, 0.5, size=(60, 5))
    result = calibrate(logits, labels)
    assert result.temperature == 1.0 and not result.held_out.helps
    assert result.note.startswith("T = 1: the fitted T = ") and "did not carry over" in result.note
    assert result.nll_after == result.nll_before
    assert calibrate(logits, labels, check_folds=0).temperature > 1.0  # what the fit alone would have done


def test_ece_and_reliability_bins_by_hand():
    # confidences 0.85 (right), 0.85 (wrong), 0.55 (right), 0.35 (wrong: it is the top class of 3)
    probs = np.array([[0.85, 0.15, 0.0], [0.85, 0.15, 0.0], [0.55, 0.45, 0.0], [0.35, 0.33, 0.32]])
    labels = np.array([0, 1, 0, 1])
    bins = reliability_bins(probs, labels, bins=10)
    assert bins.count.tolist() == [0, 0, 0, 1, 0, 1, 0, 0, 2, 0]
    assert bins.accuracy[8] == 0.5 and bins.confidence[8] == pytest.approx(0.85)
    assert np.isnan(bins.accuracy[0])
    # |0 - 0.35| * 1 + |1 - 0.55| * 1 + |0.5 - 0.85| * 2, over 4 images
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx((0.35 + 0.45 + 0.7) / 4)
    assert expected_calibration_error(probs, labels) == pytest.approx((0.35 + 0.45 + 0.7) / 4)  # 15 bins: the same groups


def test_a_manifest_without_calibration_means_temperature_1():
    assert manifest_temperature({"classes": ["a", "b"]}) == 1.0
    assert manifest_temperature({"calibration": {"temperature": 0.7}}) == 0.7
