"""Phase 1 as a converged linear probe: as good as scikit-learn's cross-validated logistic
regression, the same optimum for a given C, the recipe's label smoothing and class weights kept."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from transferkit.engine.prepare import prepare
from transferkit.engine.training import probe
from transferkit.engine.training.feature_cache import FeatureCache
from transferkit.engine.training.probe import cv_sample, fit_probe
from transferkit.recipe_loading import load_recipe


def _blobs(n_per_class: int, classes: int = 6, dim: int = 48, spread: float = 1.6, seed: int = 0):
    """Gaussian classes with overlapping tails, feature scales that differ by 100x (as pooled
    CNN features do), train and test drawn alike."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    scales = np.exp(rng.uniform(-2.3, 2.3, size=dim))
    offset = rng.normal(size=dim) * 3

    def draw(n: int):
        y = np.repeat(np.arange(classes), n)
        x = (centres[y] + spread * rng.normal(size=(len(y), dim))) * scales + offset
        return x.astype(np.float32), y

    return draw(n_per_class), draw(200)


def _one_blas_thread():
    """scikit-learn's reference fits are small problems: one BLAS thread (as the audit fits its
    probes), which on 2 cores shared with other work fitted the same model in 0.4 s instead of 15-20 s."""
    return threadpool_limits(1, user_api="blas")


def _accuracy(fit, x, y) -> float:
    logits = torch.from_numpy(x) @ fit.weight.T + fit.bias
    return float((logits.argmax(1).numpy() == y).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probe_reaches_scikit_learns_cross_validated_probe(seed):
    (x, y), (xt, yt) = _blobs(60, seed=seed)
    ours = _accuracy(fit_probe(torch.from_numpy(x), torch.from_numpy(y), 6), xt, yt)
    with warnings.catch_warnings(), _one_blas_thread():
        warnings.simplefilter("ignore")
        theirs = LogisticRegressionCV(Cs=10, cv=5, max_iter=5000).fit(x, y).score(xt, yt)
    assert ours >= theirs - 0.005, (ours, theirs)


@pytest.mark.parametrize("n_per_class", [8, 60])  # fewer samples than features (the span fit), and more
def test_for_a_given_C_the_optimum_is_scikit_learns(n_per_class):
    """Same objective as LogisticRegression(C) on standardised features: same decision function."""
    (x, y), (xt, _) = _blobs(n_per_class, seed=3)
    fit = fit_probe(torch.from_numpy(x), torch.from_numpy(y), 6, Cs=(0.5,), max_iter=500)
    scaler = StandardScaler().fit(x)
    scaler.scale_ = x.std(axis=0, ddof=1)  # torch's std, which the probe standardises with
    with _one_blas_thread():
        reference = LogisticRegression(C=0.5, tol=1e-10, max_iter=10000).fit(scaler.transform(x), y)
    ours = (torch.from_numpy(xt) @ fit.weight.T + fit.bias).numpy()
    theirs = reference.decision_function(scaler.transform(xt))
    # logits are defined up to a per-sample constant: compare them centred
    ours, theirs = ours - ours.mean(1, keepdims=True), theirs - theirs.mean(1, keepdims=True)
    assert np.abs(ours - theirs).max() < 1e-3 * max(1.0, np.abs(theirs).max())


def test_class_weights_and_label_smoothing_enter_the_fit():
    (x, y), _ = _blobs(40, classes=3, dim=4, spread=2.0, seed=4)  # overlapping classes
    keep = (y != 2) | (np.arange(len(y)) % 8 == 0)  # class 2 rare
    x, y = torch.from_numpy(x[keep]), torch.from_numpy(y[keep])
    plain = fit_probe(x, y, 3, Cs=(1.0,))
    weighted = fit_probe(x, y, 3, Cs=(1.0,), class_weights=torch.tensor([1.0, 1.0, 8.0]))
    predicted_rare = [int(((x @ f.weight.T + f.bias).argmax(1) == 2).sum()) for f in (plain, weighted)]
    assert predicted_rare[1] > predicted_rare[0]
    smoothed = fit_probe(x, y, 3, Cs=(1.0,), label_smoothing=0.3)
    confidence = [float(torch.softmax(x @ f.weight.T + f.bias, 1).max(1).values.mean()) for f in (plain, smoothed)]
    assert confidence[1] < confidence[0]


def test_views_of_one_image_stay_in_one_fold_and_all_views_are_fitted():
    (x, y), (xt, yt) = _blobs(30, seed=5)
    views = torch.stack([torch.from_numpy(x), torch.from_numpy(x) * 1.01])
    fit = fit_probe(views, torch.from_numpy(y), 6)
    assert fit.folds == 5 and len(fit.cv_log_loss) >= 3
    assert _accuracy(fit, xt, yt) > 0.5


def test_above_cv_images_c_is_chosen_on_a_stratified_sample_and_the_final_fit_uses_every_image():
    (x, y), (xt, yt) = _blobs(200, seed=6)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    sampled = fit_probe(x, y, 6, cv_images=300)
    full = fit_probe(x, y, 6)
    assert abs(_accuracy(sampled, xt, yt) - _accuracy(full, xt, yt)) <= 0.01
    # the final fit is the whole set's optimum at the chosen C (warm-started from the sample's fit)
    same_c = fit_probe(x, y, 6, Cs=(sampled.C,), max_iter=500)
    ours, theirs = (torch.from_numpy(xt) @ f.weight.T + f.bias for f in (sampled, same_c))
    ours, theirs = ours - ours.mean(1, keepdim=True), theirs - theirs.mean(1, keepdim=True)
    assert (ours - theirs).abs().max() < 2e-2 * max(1.0, float(theirs.abs().max()))


def test_the_cv_sample_keeps_every_class_in_proportion_and_at_least_two_of_each():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 3 + [3])
    picked = cv_sample(labels, 100, seed=0)
    counts = np.bincount(labels[picked], minlength=4)
    assert counts.tolist() == [91, 9, 2, 1] and len(set(picked)) == len(picked)
    assert (cv_sample(labels, 100, seed=0) == picked).all() and (cv_sample(labels, 5000, seed=0) == np.arange(994)).all()


def test_a_large_problem_fits_chunk_by_chunk_from_a_memory_mapped_cache_to_the_same_model(monkeypatch, tmp_path):
    (x, y), (xt, _) = _blobs(60, seed=7)
    reference = fit_probe(torch.from_numpy(x), torch.from_numpy(y), 6, Cs=(0.5,), max_iter=500)
    monkeypatch.setattr(probe, "MATERIALISE_UP_TO", 0)  # standardised 50 rows at a time
    monkeypatch.setattr(probe, "ROWS_PER_CHUNK", 50)
    on_disk = np.lib.format.open_memmap(tmp_path / "features.npy", mode="w+", dtype=np.float32, shape=x.shape)
    on_disk[:] = x
    single = fit_probe(torch.from_numpy(on_disk), torch.from_numpy(y), 6, Cs=(0.5,), max_iter=500)
    ours, theirs = (torch.from_numpy(xt) @ f.weight.T + f.bias for f in (single, reference))
    ours, theirs = ours - ours.mean(1, keepdim=True), theirs - theirs.mean(1, keepdim=True)
    assert (ours - theirs).abs().max() < 1e-4 * max(1.0, float(theirs.abs().max()))


def test_the_run_fits_phase_1_as_the_probe_on_its_cached_features(tiny_recipe, tmp_path):
    from transferkit.engine.run import run_recipe

    tiny_recipe["phases"]["finetune"]["epochs"] = 0
    del tiny_recipe["phases"]["extract"]["C"]  # chosen by cross-validation, as a run does unless told
    recipe = load_recipe(tiny_recipe)
    result = run_recipe(recipe, output=tmp_path / "run", log=lambda m: None)
    prepared = prepare(recipe)
    cache = FeatureCache.compute(prepared.model.backbone, prepared.splits.train, prepared.probe_preprocessing, prepared.runtime,
                                 batch_size=8)
    expected = fit_probe(cache.features, cache.targets, len(prepared.splits.classes))
    assert torch.allclose(result.model.head.weight, expected.weight, atol=1e-5)
    assert torch.allclose(result.model.head.bias, expected.bias, atol=1e-5)
    probe = result.summary["phases"]["extract"]["probe"]
    assert probe["solver"] == "lbfgs" and probe["C"] == expected.C and probe["folds"] == expected.folds
