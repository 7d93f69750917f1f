"""Shared by this plugin's tests: a tiny backbone plugin and a tiny image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

from transferkit.plugins import get_plugins, module_plugin


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = 8
        self.data_config = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "input_size": (3, 32, 32)}

    def forward(self, x):
        return self.body(x)


@pytest.fixture
def tiny_backbone():
    plugins = get_plugins()
    name = plugins.register(module_plugin(register_backbones=lambda register: register("avgtest/tiny", lambda pretrained=False: Tiny())), "avgtest")
    yield "avgtest/tiny"
    plugins.unregister(name)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("test", 4)):
        for cls, colour in (("red", (220, 30, 30)), ("green", (30, 200, 40)), ("blue", (30, 40, 220))):
            (tmp_path / "images" / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = np.clip(np.array(colour) + rng.integers(-25, 25, (36, 44, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(tmp_path / "images" / split / cls / f"{i}.png")
    return tmp_path / "images"


def recipe(folder: Path, backbone: str, **averaging) -> dict:
    out = {
        "name": "avg", "seed": 0,
        "data": {"source": "imagefolder", "root": str(folder), "image_size": 32, "batch_size": 6, "val_fraction": 0.2},
        "backbone": {"name": backbone, "weights": "none"},
        "phases": {"extract": {"epochs": 2, "lr": 0.05}, "finetune": {"epochs": 2, "lr_ratio": 0.5}},
    }
    if averaging:
        out["averaging"] = averaging
    return out
