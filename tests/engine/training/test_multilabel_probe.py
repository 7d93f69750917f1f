"""The multi-label probe: for a given C the optimum of scikit-learn's one-vs-rest logistic
regression (same C, intercept unpenalised), ``pos_weight`` as scikit-learn's class weight, and
with C by cross-validation a macro mAP within half a point of scikit-learn's per-label
``LogisticRegressionCV``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import average_precision_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from transferkit.engine.training.multilabel_probe import balanced_pos_weight, fit_multilabel_probe
from transferkit.errors import DataError


def _multilabel(n: int, dim: int = 20, labels: int = 5, seed: int = 0, noise: float = 1.0):
    """Gaussian features with scales 100x apart, labels that are noisy linear functions of them:
    labels 0-2 share a direction (correlated, as "sky" and "outdoor"), frequencies from about
    half down to a tenth. Train and held-out sets drawn alike."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(dim, labels))
    directions[:, 1:3] += 1.5 * directions[:, :1]
    directions /= np.linalg.norm(directions, axis=0)
    scales = np.exp(rng.uniform(-2.3, 2.3, size=dim))
    offset = rng.normal(size=dim) * 3
    cut = np.linspace(0.0, 1.3, labels)  # larger cut: rarer label

    def draw(m: int):
        z = rng.normal(size=(m, dim))
        y = (z @ directions * 1.5 + noise * rng.normal(size=(m, labels)) > cut * 1.8).astype(np.uint8)
        return (z * scales + offset).astype(np.float32), y

    return draw(n), draw(2000)


def _standardised(x: np.ndarray, xt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both sets standardised as the probe does (unbiased std), in float64 (scikit-learn would fit
    float32 rows in float32), and the scale."""
    x, xt = x.astype(np.float64), xt.astype(np.float64)
    scaler = StandardScaler().fit(x)
    scaler.scale_ = x.std(axis=0, ddof=1)  # torch's std, which the probe standardises with
    return scaler.transform(x), scaler.transform(xt), scaler.scale_


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


@pytest.mark.parametrize("n", [12, 300])  # fewer samples than features (the span fit), and more
def test_for_a_given_C_the_optimum_is_scikit_learns_one_vs_rest(n):
    (x, y), (xt, _) = _multilabel(n, seed=1)
    if n == 12:
        y[:2], y[2:4] = 1, 0  # every label with a positive and a negative
    fit = fit_multilabel_probe(torch.from_numpy(x), y, Cs=(0.3,), max_iter=500)
    z, zt, scale = _standardised(x, xt)
    with threadpool_limits(1, user_api="blas"):
        reference = OneVsRestClassifier(LogisticRegression(C=0.3, tol=1e-10, max_iter=10000)).fit(z, y)
    theirs_coef = np.stack([e.coef_[0] for e in reference.estimators_])  # [L, F] on standardised features
    ours_coef = fit.weight.double().numpy() * scale  # the raw weight, back on standardised features
    coef_diff = np.abs(ours_coef - theirs_coef).max()
    prob_diff = np.abs(_sigmoid(fit.logits(torch.from_numpy(xt)).double().numpy()) - reference.predict_proba(zt)).max()
    print(f"n={n}: max |coef diff| {coef_diff:.2e} (largest |coef| {np.abs(theirs_coef).max():.2f}), max |prob diff| {prob_diff:.2e}")
    assert coef_diff < 1e-3 * max(1.0, np.abs(theirs_coef).max())
    assert prob_diff < 1e-4


def test_pos_weight_is_scikit_learns_class_weight_on_the_positives():
    (x, y), (xt, _) = _multilabel(200, dim=8, seed=2)
    pos_weight = balanced_pos_weight(y)
    assert torch.allclose(pos_weight, torch.from_numpy((len(y) - y.sum(0)) / y.sum(0)).double())
    fit = fit_multilabel_probe(torch.from_numpy(x), y, Cs=(1.0,), pos_weight=pos_weight, max_iter=500)
    plain = fit_multilabel_probe(torch.from_numpy(x), y, Cs=(1.0,), max_iter=500)
    z, zt, _ = _standardised(x, xt)
    ours = _sigmoid(fit.logits(torch.from_numpy(xt)).double().numpy())
    for label in range(y.shape[1]):
        weights = {0: 1.0, 1: float(pos_weight[label])}
        with threadpool_limits(1, user_api="blas"):
            reference = LogisticRegression(C=1.0, class_weight=weights, tol=1e-10, max_iter=10000).fit(z, y[:, label])
        assert np.abs(ours[:, label] - reference.predict_proba(zt)[:, 1]).max() < 1e-4
    # balanced weights: the rare label's mean probability goes from its frequency towards a half
    rare = int(np.argmin(y.sum(0)))
    weighted_mean, plain_mean = ours[:, rare].mean(), torch.sigmoid(plain.logits(torch.from_numpy(xt))[:, rare]).mean().item()
    assert abs(plain_mean - y[:, rare].mean()) < 0.05 and weighted_mean > 2 * plain_mean, (plain_mean, weighted_mean)


def _macro_map(scores: np.ndarray, y: np.ndarray) -> float:
    return float(average_precision_score(y, scores, average="macro"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_C_by_cross_validation_ranks_as_well_as_scikit_learns_per_label_cv(seed):
    (x, y), (xt, yt) = _multilabel(300, seed=seed, noise=1.5)
    fit = fit_multilabel_probe(torch.from_numpy(x), y, seed=seed)
    ours = _macro_map(fit.logits(torch.from_numpy(xt)).numpy(), yt)
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore")
        cv = LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss", max_iter=5000)
        reference = OneVsRestClassifier(make_pipeline(StandardScaler(), cv)).fit(x, y)
    theirs = _macro_map(reference.decision_function(xt), yt)
    chosen = ", ".join(f"{e.steps[-1][1].C_[0]:.3g}" for e in reference.estimators_)
    print(f"seed {seed}: macro mAP ours {ours:.4f} (C {fit.C:g}), scikit-learn's per-label CV {theirs:.4f} (C {chosen})")
    assert ours >= theirs - 0.005, (ours, theirs)
    assert fit.folds == 5 and set(fit.cv_loss) <= {1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0} and fit.C in fit.cv_loss


def test_cross_validation_prefers_a_strong_penalty_on_pure_noise():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(120, 30)).astype(np.float32)
    y = (rng.random((120, 3)) < 0.3).astype(np.uint8)  # labels independent of the features
    fit = fit_multilabel_probe(torch.from_numpy(x), y)
    assert fit.C <= 1e-2, fit.cv_loss
    assert fit.summary()["C"] == fit.C and fit.summary()["head"] == "one-vs-rest logistic"


def test_labels_a_head_cannot_learn_are_named():
    x = torch.randn(20, 4)
    y = np.zeros((20, 3), dtype=np.uint8)
    y[:5, 0] = 1
    y[:, 2] = 1
    with pytest.raises(DataError, match=r"1 label\(s\) with no positive image among the 20 training images: 'dog'"):
        fit_multilabel_probe(x, y, Cs=(1.0,), label_names=["cat", "dog", "sky"])
    y[0, 1] = 1
    with pytest.raises(DataError, match=r"no negative image .*'sky'"):
        fit_multilabel_probe(x, y, Cs=(1.0,), label_names=["cat", "dog", "sky"])


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        fit_multilabel_probe(torch.randn(10, 3), np.ones((9, 2)))
    with pytest.raises(ValueError):
        fit_multilabel_probe(torch.randn(10, 3), np.full((10, 2), 2))
    y = np.zeros((10, 2))
    y[:5] = 1
    with pytest.raises(ValueError, match="pos_weight"):
        fit_multilabel_probe(torch.randn(10, 3), y, Cs=(1.0,), pos_weight=[1.0, 2.0, 3.0])
