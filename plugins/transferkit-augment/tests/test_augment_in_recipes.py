"""The augmentations used the way users use them: named in a recipe, trained end to end by the
engine (image augs in the loader, batch augs on the device with soft targets), and resumed."""

from __future__ import annotations

import pytest
import torch

import transferkit
from transferkit.testing import make_recipe, tiny_backbone, write_image_folder  # noqa: F401  (tiny_backbone: fixture)


@pytest.fixture
def folder(tmp_path):
    """train/ (9 per class) and test/ (3 per class) of 36 px images."""
    return write_image_folder(tmp_path, {"train": 9, "test": 3}, size=36)


def _recipe(folder, backbone):
    return make_recipe(
        folder, backbone, name="aug",
        data={"batch_size": 5, "val_fraction": 0.2},
        phases={"extract": {"epochs": 1, "lr": 0.05}, "finetune": {"epochs": 2, "lr_ratio": 0.1}},
        train={"checkpoint_every_steps": 1},
        augment={
            "image": [{"name": "augment/randaugment", "n": 2, "m": 9}, {"name": "augment/cutout", "size": 0.4}],
            "batch": [{"name": "augment/mixup_cutmix", "switch_prob": 0.5, "seed": 3}],
        },
    )


def test_recipe_with_image_and_batch_augmentations_trains(folder, tiny_backbone, tmp_path):
    result = transferkit.finetune(_recipe(folder, tiny_backbone), output=tmp_path / "run", quiet=True)
    assert result.test_accuracy is not None


def test_resume_keeps_the_batch_augmentation_stream(folder, tiny_backbone, tmp_path):
    recipe = _recipe(folder, tiny_backbone)
    full = transferkit.finetune(recipe, output=tmp_path / "full", quiet=True)

    class Stop(Exception):
        pass

    def stop(info):
        if (info["phase"], info["epoch"], info["step"]) == ("finetune", 0, 3):
            raise Stop

    with pytest.raises(Stop):
        transferkit.finetune(recipe, output=tmp_path / "cut", on_step=[stop], quiet=True)
    resumed = transferkit.finetune(recipe, resume=tmp_path / "cut", quiet=True)
    a, b = (transferkit.load(r.run_dir).model.state_dict() for r in (full, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_parameter_is_a_recipe_error(folder, tiny_backbone):
    recipe = _recipe(folder, tiny_backbone)
    recipe["augment"]["image"][0]["magnitude"] = 9
    with pytest.raises(transferkit.RecipeError, match=r"augment\.image\[0\]: augment/randaugment: .*'magnitude'.*its parameters: n, m"):
        transferkit.load_recipe(recipe)
