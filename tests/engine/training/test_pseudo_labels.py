"""``data.unlabeled``: pseudo-labels join phase 1's final probe fit, never from the data's own
images (by path: refused; a byte copy of a validation or test image: left out), recorded in the
summary; the recipe's rules."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import transferkit
from transferkit.engine.splits import build_splits
from transferkit.engine.training.probe import Extra, fit_probe
from transferkit.engine.training.pseudo_labels import refit_with_pseudo_labels, unlabeled_images
from transferkit.errors import DataError, RecipeError
from transferkit.recipe_loading import load_recipe
from transferkit.testing import make_recipe, write_image_folder


def _blobs(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    centres = np.array([[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    x = np.concatenate([c + rng.normal(size=(n_per_class, 4)) for c in centres])
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(np.repeat(np.arange(3), n_per_class))


def test_confident_pseudo_labels_join_the_final_fit_at_the_same_C():
    x, y = _blobs(4, 0)
    unlabeled, truth = _blobs(200, 1)
    test, test_y = _blobs(500, 2)
    fit = fit_probe(x, y, 3, Cs=(1.0,))
    refit = refit_with_pseudo_labels(fit, x, y, unlabeled, ["a", "b", "c"], threshold=0.7, weight=1.0)
    record = refit.summary()["pseudo_labels"]
    assert refit.C == fit.C and 0 < record["used"] < 600 and sum(record["per_class"].values()) == record["used"]
    accuracy = lambda f: float(((test @ f.weight.T + f.bias).argmax(1) == test_y).float().mean())  # noqa: E731
    assert accuracy(refit) >= accuracy(fit)


def test_the_refit_keeps_the_fits_scaling():
    x, y = _blobs(4, 0)
    unlabeled, _ = _blobs(200, 1)
    for scaling in ("feature", "block"):
        fit = fit_probe(x, y, 3, Cs=(1.0,), scalings=(scaling,), blocks=[2, 2])
        refit = refit_with_pseudo_labels(fit, x, y, unlabeled, ["a", "b", "c"], threshold=0.7, weight=1.0, blocks=[2, 2])
        assert refit.scaling == scaling and refit.pseudo_labels["used"] > 0


def test_nothing_confident_enough_leaves_the_fit_as_it_was():
    x, y = _blobs(4, 0)
    fit = fit_probe(x, y, 3, Cs=(1.0,))
    weight = fit.weight.clone()
    same = refit_with_pseudo_labels(fit, x, y, torch.zeros(5, 4), ["a", "b", "c"], threshold=0.99, weight=1.0)
    assert same.pseudo_labels["used"] == 0 and torch.equal(same.weight, weight)


def test_an_extra_sample_pulls_the_fit_by_its_weight():
    x, y = _blobs(4, 0)
    point = torch.tensor([[0.0, 0.0, 0.0, 3.0]])
    probs = {}
    for w in (0.1, 1.0):
        fit = fit_probe(x, y, 3, Cs=(1.0,), extra=Extra(point, torch.tensor([2]), torch.tensor([w])))
        probs[w] = torch.softmax(point @ fit.weight.T + fit.bias, 1)[0, 2].item()
    assert probs[1.0] > probs[0.1]


def test_the_datas_own_images_are_refused_and_copies_left_out(image_folder, tiny_backbone, tmp_path):
    recipe = load_recipe(make_recipe(image_folder, "tiny/cnn", data={"unlabeled": str(image_folder / "test")}),
                         check_data=False)
    splits = build_splits(recipe)
    with pytest.raises(DataError, match=r"data.unlabeled: .* holds 12 of the data's own test images \(first: ") as info:
        unlabeled_images(recipe, splits)
    assert "\n" not in str(info.value)
    pool = write_image_folder(tmp_path / "pool", {"u": 3}, seed=5)
    test_image = next((image_folder / "test").rglob("*.png"))
    shutil.copyfile(test_image, pool / "copy.png")
    recipe = load_recipe(make_recipe(image_folder, "tiny/cnn", data={"unlabeled": str(pool)}), check_data=False)
    images, copies = unlabeled_images(recipe, build_splits(recipe))
    assert copies == 1 and len(images) == 9 and pool / "copy.png" not in images.paths


def test_a_run_records_its_pseudo_labels(image_folder, tiny_backbone, tmp_path):
    pool = write_image_folder(tmp_path / "pool", {"u": 5}, seed=9)
    recipe = make_recipe(image_folder, tiny_backbone, data={"unlabeled": str(pool)}, phases={"finetune": {"epochs": 1}})
    summary = transferkit.finetune(recipe, output=tmp_path / "run", quiet=True).summary
    record = summary["phases"]["extract"]["probe"]["pseudo_labels"]
    assert record["unlabeled_images"] == 15 and 0 <= record["used"] <= 15 and record["threshold"] == 0.9 and record["weight"] == 0.3


def test_unlabeled_needs_the_probe(image_folder, tiny_backbone):
    with pytest.raises(RecipeError, match="data.unlabeled: the unlabelled images join phase 1's probe"):
        load_recipe(make_recipe(image_folder, "tiny/cnn", data={"unlabeled": str(image_folder)},
                                phases={"extract": {"solver": "sgd"}}), check_data=False)


def test_a_feature_constant_on_the_labelled_images_does_not_blow_up_the_extra_ones():
    """Post-ReLU features are often zero on all of a few labelled images and not on the others:
    standardised by the labelled images' statistics alone, such a feature scaled the extra samples
    by 1e6 and true labels at weight 0.3 cost points instead of adding them."""
    x, y = _blobs(4, 0)
    unlabeled, truth = _blobs(200, 1)
    test, test_y = _blobs(500, 2)
    rng = np.random.default_rng(3)
    x = torch.cat([x, torch.zeros(len(x), 1)], 1)  # zero on every labelled image
    unlabeled = torch.cat([unlabeled, torch.as_tensor(rng.random((len(unlabeled), 1)), dtype=torch.float32)], 1)
    test = torch.cat([test, torch.as_tensor(rng.random((len(test), 1)), dtype=torch.float32)], 1)
    base = fit_probe(x, y, 3, Cs=(1.0,))
    oracle = fit_probe(x, y, 3, Cs=(1.0,), extra=Extra(unlabeled, truth, torch.full((len(truth),), 0.3)))
    accuracy = lambda f: float(((test @ f.weight.T + f.bias).argmax(1) == test_y).float().mean())  # noqa: E731
    assert torch.isfinite(oracle.weight).all() and oracle.weight.abs().max() < 100
    assert accuracy(oracle) >= accuracy(base) - 0.01
