"""The augmentations used the way users use them: named in a recipe, trained end to end by the
engine (image augs in the loader, batch augs on the device with soft targets), and resumed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

import transferkit
from transferkit.plugins import get_plugins, module_plugin


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = 8
        self.data_config = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "input_size": (3, 32, 32)}

    def forward(self, x):
        return self.body(x)


@pytest.fixture
def tiny_backbone():
    plugins = get_plugins()
    name = plugins.register(module_plugin(register_backbones=lambda register: register("augtest/tiny", lambda pretrained=False: Tiny())), "augtest")
    yield "augtest/tiny"
    plugins.unregister(name)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 9), ("test", 3)):
        for cls, colour in (("red", (220, 30, 30)), ("green", (30, 200, 40)), ("blue", (30, 40, 220))):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = np.clip(np.array(colour) + rng.integers(-25, 25, (36, 36, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
    return tmp_path


def _recipe(folder, backbone):
    return {
        "name": "aug", "seed": 0,
        "data": {"source": "imagefolder", "root": str(folder), "image_size": 32, "batch_size": 5, "val_fraction": 0.2},
        "backbone": {"name": backbone, "weights": "none"},
        "phases": {"extract": {"epochs": 1, "lr": 0.05}, "finetune": {"epochs": 2}},
        "train": {"checkpoint_every_steps": 1},
        "augment": {
            "image": [{"name": "randaugment", "n": 2, "m": 9}, {"name": "cutout", "size": 0.4}],
            "batch": [{"name": "mixup_cutmix", "switch_prob": 0.5, "seed": 3}],
        },
    }


def test_recipe_with_image_and_batch_augmentations_trains(folder, tiny_backbone, tmp_path):
    result = transferkit.finetune(_recipe(folder, tiny_backbone), output=tmp_path / "run", quiet=True)
    assert result.test_accuracy is not None


def test_resume_keeps_the_batch_augmentation_stream(folder, tiny_backbone, tmp_path):
    from transferkit.engine.run import run_recipe
    from transferkit.recipe_loading import load_recipe

    recipe = load_recipe(_recipe(folder, tiny_backbone))
    full = run_recipe(recipe, output=tmp_path / "full", log=lambda m: None)

    class Stop(Exception):
        pass

    def stop(info):
        if (info["phase"], info["epoch"], info["step"]) == ("finetune", 0, 3):
            raise Stop

    with pytest.raises(Stop):
        run_recipe(recipe, output=tmp_path / "cut", on_step=[stop], log=lambda m: None)
    resumed = run_recipe(recipe, resume=tmp_path / "cut", log=lambda m: None)
    a, b = (load_file(str(r.run_dir / "model.safetensors")) for r in (full, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_parameter_is_a_recipe_error(folder, tiny_backbone):
    recipe = _recipe(folder, tiny_backbone)
    recipe["augment"]["image"][0]["magnitude"] = 9
    with pytest.raises(transferkit.RecipeError, match=r"augment\.image\[0\]: randaugment: .*'magnitude'.*its parameters: n, m"):
        transferkit.load_recipe(recipe)
