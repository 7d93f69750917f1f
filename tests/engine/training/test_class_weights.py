"""train.class_weights = "balanced": scikit-learn's weights over the training labels, a loss that
equals torch's weighted cross-entropy for one-hot targets, and both phases trained with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

import transferkit
from transferkit.engine.training import loop
from transferkit.engine.training.class_weights import balanced_class_weights
from transferkit.engine.training.loop import make_targets, soft_cross_entropy
from transferkit.errors import DataError, RecipeError
from transferkit.recipe_loading import load_recipe
from transferkit.testing import COLOURS, make_image

COUNTS = {"blue": 3, "green": 6, "red": 12}  # train images per class; ImageFolder sorts the names


def _imbalanced_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, counts in (("train", COUNTS), ("test", {c: 2 for c in COUNTS})):
        for cls, n in counts.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                make_image(COLOURS[cls], rng).save(root / split / cls / f"{i}.png")
    return root


def test_weighted_soft_cross_entropy_equals_torchs_weighted_cross_entropy_for_one_hot_targets():
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(16, 5, generator=gen), torch.randint(0, 5, (16,), generator=gen)
    weights = torch.rand(5, generator=gen) * 3 + 0.1
    ours = soft_cross_entropy(logits, make_targets(labels, 5, 0.0), weights)
    assert torch.allclose(ours, F.cross_entropy(logits, labels, weight=weights), atol=1e-6)
    assert torch.allclose(soft_cross_entropy(logits, make_targets(labels, 5, 0.0)), F.cross_entropy(logits, labels), atol=1e-6)


def test_soft_targets_weigh_each_sample_by_the_classes_it_stands_for():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 4, generator=gen)
    targets = torch.softmax(torch.randn(8, 4, generator=gen) * 3, dim=-1)  # mixed / smoothed
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    per_sample = -(targets * F.log_softmax(logits, -1)).sum(-1)
    sample_weight = (targets * weights).sum(-1)
    expected = (per_sample * sample_weight).sum() / sample_weight.sum()
    assert torch.allclose(soft_cross_entropy(logits, targets, weights), expected, atol=1e-6)
    # equal weights, whatever their scale, are the unweighted loss
    assert torch.allclose(soft_cross_entropy(logits, targets, torch.full((4,), 2.5)), soft_cross_entropy(logits, targets), atol=1e-6)


def test_balanced_weights_are_scikit_learns_and_a_missing_class_is_one_line():
    targets = [0] * 3 + [1] * 6 + [2] * 12
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(targets))
    assert np.allclose(balanced_class_weights(targets, ["a", "b", "c"]), expected)
    assert np.allclose(expected, [21 / 9, 21 / 18, 21 / 36])
    with pytest.raises(DataError, match=r"class 'c' has no training images"):
        balanced_class_weights([0, 1, 1], ["a", "b", "c"])


def test_both_phases_train_with_the_weights_of_the_imbalanced_folder(tiny_recipe, tmp_path, monkeypatch, capsys):
    tiny_recipe["data"].update(root=str(_imbalanced_folder(tmp_path / "imbalanced")), val_fraction=0.0)
    tiny_recipe["phases"]["extract"].update(epochs=1, solver="sgd")  # the weighted loss of SGD steps in both phases
    tiny_recipe["phases"]["finetune"]["epochs"] = 1
    tiny_recipe["train"]["class_weights"] = "balanced"
    tiny_recipe["train"]["label_smoothing"] = 0.1
    seen: list[torch.Tensor | None] = []

    def spy(logits, targets, class_weights=None):
        seen.append(None if class_weights is None else class_weights.detach().cpu().clone())
        return soft_cross_entropy(logits, targets, class_weights)

    monkeypatch.setattr(loop, "soft_cross_entropy", spy)
    result = transferkit.finetune(tiny_recipe, output=tmp_path / "run")

    labels = np.repeat(np.arange(3), [COUNTS[c] for c in sorted(COUNTS)])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert result.summary["class_weights"] == pytest.approx(dict(zip(sorted(COUNTS), expected)))
    steps_per_epoch = -(-sum(COUNTS.values()) // tiny_recipe["data"]["batch_size"])
    assert len(seen) == 2 * steps_per_epoch  # the cached-feature phase 1 and phase 2
    assert all(w is not None and torch.allclose(w, torch.tensor(expected, dtype=torch.float32)) for w in seen)
    out = capsys.readouterr().out
    assert out.count("class weights (balanced") == 1
    assert "blue 2.333 (3), green 1.167 (6), red 0.583 (12)" in out
    assert "cached 21 train features" in out


def test_unweighted_by_default_and_recipe_errors_in_the_usual_style(tiny_recipe):
    assert load_recipe(tiny_recipe).train.class_weights == "none"
    tiny_recipe["train"]["class_weights"] = "sqrt"
    with pytest.raises(RecipeError, match=r"^recipe: train\.class_weights: Input should be 'none' or 'balanced' \(got 'sqrt'\)$"):
        load_recipe(tiny_recipe)
