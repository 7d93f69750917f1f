"""Shared fixtures: a tiny backbone plugin and tiny generated image folders (seconds, no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import transferkit
from transferkit.plugins import get_plugins, module_plugin

SHARED_FLOWERS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flowers12"
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


class TinyCNN(nn.Module):
    """conv-BN-ReLU x2 + global pool: a real backbone with BatchNorm, small enough for seconds."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 2 * width
        self.stages = [self.stem, self.stage1]
        self.data_config = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "input_size": (3, 32, 32)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stage1(self.stem(x))).flatten(1)


def tiny_factory(pretrained: bool = False, width: int = 8) -> TinyCNN:
    return TinyCNN(width)


@pytest.fixture
def tiny_plugin():
    """Registers backbone ``tiny/cnn`` through an in-process plugin for the test's duration."""
    plugins = get_plugins()
    name = plugins.register(module_plugin(register_backbones=lambda register: register("tiny/cnn", tiny_factory, description="test CNN")), "tiny-test-plugin")
    yield name
    plugins.unregister(name)


def make_image(colour: tuple[int, int, int], rng: np.random.Generator, size: int = 40) -> Image.Image:
    noise = rng.integers(-30, 30, size=(size, size, 3))
    arr = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def write_image_folder(root: Path, per_class: dict[str, int], seed: int = 0, ext: str = ".png") -> Path:
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for cls, colour in COLOURS.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                make_image(colour, rng).save(folder / f"{cls}_{split}_{i}{ext}")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """root/train/{red,green,blue}/ (12 each) and root/test/ (4 each), 40-px PNGs."""
    return write_image_folder(tmp_path / "images", {"train": 12, "test": 4})


@pytest.fixture
def tiny_recipe(image_folder: Path, tiny_plugin: str) -> dict[str, Any]:
    return {
        "name": "tiny",
        "seed": 0,
        "data": {"source": "imagefolder", "root": str(image_folder), "image_size": 32, "batch_size": 8, "val_fraction": 0.25},
        "backbone": {"name": "tiny/cnn", "weights": "none"},
        "phases": {"extract": {"epochs": 2, "lr": 0.05}, "finetune": {"epochs": 2, "lr_ratio": 0.1}},
        "train": {"weight_decay": 0.0},
    }


SUBPROCESS_PLUGIN = """
import torch
from torch import nn
from transferkit import hookimpl

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = 8
        self.data_config = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "input_size": (3, 32, 32)}

    def forward(self, x):
        return self.body(x)

@hookimpl
def register_backbones(register):
    register("subprocess/tiny", lambda pretrained=False: Tiny())
"""


def installed_tiny_plugin(root: Path) -> Path:
    """A folder to put on PYTHONPATH: an installed-looking distribution whose entry point
    registers backbone ``subprocess/tiny`` (for tests that run transferkit in other processes)."""
    dist = root / "subprocesstiny-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: subprocesstiny\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[transferkit]\nsubprocesstiny = subprocesstiny_plugin\n")
    (root / "subprocesstiny_plugin.py").write_text(SUBPROCESS_PLUGIN)
    return root


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    import tomli_w

    path.write_text(tomli_w.dumps(recipe))
    return path


@pytest.fixture(autouse=True)
def _quiet_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_OFFLINE", "1")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


__all__ = ["TinyCNN", "tiny_factory", "write_image_folder", "write_recipe", "SHARED_FLOWERS", "transferkit"]


def needs_plugin_component(kind: str, name: str, package: str) -> pytest.MarkDecorator:
    """Skip where a core test uses a plugin's component and that plugin is not installed: the
    core's tests stay green with the plugins uninstalled."""
    from transferkit.plugins import registry

    return pytest.mark.skipif(name not in registry(kind), reason=f"needs {package} ({kind} {name!r})")
