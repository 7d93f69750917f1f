"""Backbone ranking (``transferkit select``, ``backbone.name = "auto"``): an informative backbone
ranks above one whose features are noise, on the training images only (the test split is never
read); the recipe's rules for ``auto`` and ``candidates``; a candidate without weights refused."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import tomllib
import torch

import transferkit
from transferkit.engine.preflight.backbone_ranking import rank_backbones, resolve_auto_backbone
from transferkit.errors import RecipeError, WeightsError
from transferkit.recipe_loading import load_recipe
from transferkit.testing import TinyCNN, make_recipe, registered_backbone


class NoiseNet(TinyCNN):
    """TinyCNN's shape and cost, features that say nothing about the image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 0 + torch.randn(x.shape[0], self.num_features)


@contextlib.contextmanager
def two_backbones():
    with registered_backbone() as good, registered_backbone("tiny/noise", lambda pretrained=False: NoiseNet()) as noise:
        yield good, noise


def _spoil_test_images(root: Path) -> None:
    for f in (root / "test").rglob("*.png"):
        f.write_bytes(b"not an image")  # reading one would fail: on_bad_image = "error"


def test_informative_backbone_ranks_first_on_training_images_only(image_folder):
    _spoil_test_images(image_folder)
    with two_backbones() as (good, noise):
        recipe = load_recipe(make_recipe(image_folder, good))
        ranking = rank_backbones(recipe, [noise, good], log=lambda m: None)
    assert [c.backbone for c in ranking.candidates] == [good, noise]
    best, other = ranking.candidates
    assert best.cv_top1 > 0.9 and other.cv_top1 < 0.7
    assert other.log_loss_gap > 2 * other.log_loss_gap_se  # beyond noise, image by image
    assert ranking.images == 36 and ranking.splits_used == ["train", "val"]  # 27 train + 9 val, no test image
    assert best.train_images_per_s > 0 and best.parameters > 0 and best.native_size == 32
    assert "lowest out-of-fold log-loss" in ranking.why and good in ranking.why
    data = ranking.to_dict()
    assert data["recommended"] == good and data["test_split_read"] is False


def test_auto_backbone_trains_the_first_of_the_ranking(image_folder, tmp_path):
    with two_backbones() as (good, noise):
        recipe = make_recipe(image_folder, "auto", backbone={"candidates": [noise, good], "weights": "imagenet"},
                             phases={"finetune": {"epochs": 1}})
        result = transferkit.finetune(recipe, output=tmp_path / "run", quiet=True)
    assert result.summary["backbone"] == good
    assert result.summary["backbone_ranking"]["recommended"] == good
    saved = tomllib.loads((tmp_path / "run" / "recipe.toml").read_text())["backbone"]
    assert saved["name"] == good and saved["candidates"] == []  # --resume and predict see the chosen backbone
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["backbone_ranking"]["ranking"][1]["backbone"] == noise


def test_resolve_leaves_a_named_backbone_alone(image_folder):
    with registered_backbone() as good:
        recipe = load_recipe(make_recipe(image_folder, good))
        assert resolve_auto_backbone(recipe) == (recipe, None)


@pytest.mark.parametrize(("backbone", "message"), [
    ({"name": "auto"}, 'backbone.name = "auto" needs backbone.candidates'),
    ({"candidates": ["tiny/cnn"]}, 'backbone.candidates is read only with backbone.name = "auto"'),
    ({"name": "auto", "candidates": ["tiny/cnn", "tiny/nope"]}, "backbone.candidates[1]"),
])
def test_recipe_rules_for_auto(image_folder, backbone, message):
    with registered_backbone() as good:
        recipe = make_recipe(image_folder, good, backbone={**backbone, "weights": "imagenet"})
        with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
            load_recipe(recipe)
    assert "\n" not in str(info.value)


def test_candidate_without_weights_here_is_refused(image_folder):
    with registered_backbone() as good, registered_backbone("tiny/download", weights={"imagenet": "https://example.org/w.pth"}) as far:
        recipe = load_recipe(make_recipe(image_folder, good))
        with pytest.raises(WeightsError, match="candidate 'tiny/download' has no ImageNet weights on this machine"):
            rank_backbones(recipe, [good, far], log=lambda m: None)


def test_auto_recipe_names_the_fix_where_one_backbone_is_needed(image_folder):
    from transferkit.engine.prepare import build_backbone

    with registered_backbone() as good:
        recipe = load_recipe(make_recipe(image_folder, "auto", backbone={"candidates": [good], "weights": "imagenet"}))
        with pytest.raises(RecipeError, match="transferkit select RECIPE --backbones tiny/cnn"):
            build_backbone(recipe)


def test_validate_reads_an_auto_recipe(image_folder, tmp_path, capsys):
    from transferkit.cli import main
    from transferkit.testing import write_recipe

    with two_backbones() as (good, noise):
        path = write_recipe(tmp_path / "auto.toml", make_recipe(image_folder, "auto", backbone={"candidates": [good, noise],
                                                                                                "weights": "imagenet"}))
        assert main(["validate", str(path)]) == 0
    assert f"auto, the best of {good}, {noise}" in capsys.readouterr().out
