"""Helpers for testing transferkit plugins (and transferkit itself), on generated images in
seconds and without a network: a tiny backbone, in-process plugins registered for one test,
image folders, a tiny recipe and a finished tiny run.

A public submodule for tests: ``from transferkit.testing import ...``. It needs pytest for the
fixtures, which is why ``import transferkit`` does not import it. The fixtures (``tiny_backbone``,
``image_folder``, ``tiny_recipe``, ``tiny_run``) are used by importing them into a ``conftest.py``
or a test module::

    from transferkit.testing import image_folder, tiny_backbone, tiny_recipe, tiny_run  # noqa: F401
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pytest
import tomli_w
import torch
from PIL import Image
from torch import nn

import transferkit

from .cli import main
from .models.backbone import backbone_stages, data_config
from .plugins import module_plugin

TINY_BACKBONE = "tiny/cnn"
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}
TINY_SPLITS = {"train": 12, "test": 4}  # images per class


class TinyCNN(nn.Module):
    """conv-BN-ReLU x2 + global pool: a real backbone with BatchNorm and two stages, small enough
    for a whole run in seconds on a CPU."""

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


def tiny_cnn(pretrained: bool = False, width: int = 8) -> TinyCNN:
    """The backbone factory of ``TinyCNN`` (it has no pretrained weights)."""
    return TinyCNN(width)


# -- how transferkit sees a backbone ---------------------------------------------------------------
def stages_of(backbone: nn.Module) -> list[nn.Module]:
    """The stages transferkit unfreezes for ``unfreeze = "last:K"`` (the declared ``stages``, or
    its split of the top-level children), input to output."""
    return backbone_stages(backbone)


def data_config_of(backbone: nn.Module) -> dict[str, Any]:
    """The backbone's ``data_config`` as transferkit reads it: ImageNet's values where it has none."""
    return data_config(backbone)


# -- in-process plugins --------------------------------------------------------------------------
def plugin(**hooks: Callable[..., None]) -> ModuleType:
    """A plugin module made of hook functions: ``plugin(register_backbones=lambda register: ...)``."""
    return module_plugin(**hooks)


@contextlib.contextmanager
def registered(plugin_object: Any, name: str) -> Iterator[str]:
    """``plugin_object`` (a module or object with ``@transferkit.hookimpl`` functions) registered
    as plugin ``name`` inside the ``with`` block, unregistered after it."""
    plugins = transferkit.get_plugins()
    registered_name = plugins.register(plugin_object, name)
    try:
        yield registered_name
    finally:
        plugins.unregister(registered_name)


@contextlib.contextmanager
def registered_backbone(
    name: str = TINY_BACKBONE, factory: Callable[..., nn.Module] = tiny_cnn, plugin_name: str | None = None, **extras: Any
) -> Iterator[str]:
    """Backbone ``name`` built by ``factory`` registered (by plugin ``plugin_name``) inside the
    ``with`` block; yields ``name``. ``extras`` go to ``register`` (e.g. ``weights={...}``)."""
    hooks = plugin(register_backbones=lambda register: register(name, factory, description="test backbone", **extras))
    with registered(hooks, plugin_name or f"test-plugin {name}"):
        yield name


# -- data, recipe, run ----------------------------------------------------------------------------
def make_image(colour: tuple[int, int, int], rng: np.random.Generator, size: int | tuple[int, int] = 40) -> Image.Image:
    """A noisy square (or ``(height, width)``) of one colour."""
    height, width = (size, size) if isinstance(size, int) else size
    noise = rng.integers(-30, 30, size=(height, width, 3))
    return Image.fromarray(np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8))


def write_image_folder(
    root: Path,
    per_class: Mapping[str, int] = TINY_SPLITS,
    seed: int = 0,
    ext: str = ".png",
    *,
    size: int | tuple[int, int] = 40,
    colours: Mapping[str, tuple[int, int, int]] = COLOURS,
) -> Path:
    """An ImageFolder: ``root/<split>/<class>/*`` with ``per_class[split]`` images of each colour
    class (red, green, blue by default); deterministic for a seed."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for cls, colour in colours.items():
            folder = Path(root) / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                make_image(colour, rng, size).save(folder / f"{cls}_{split}_{i}{ext}")
    return Path(root)


def make_recipe(root: Path, backbone: str = TINY_BACKBONE, /, **sections: Any) -> dict[str, Any]:
    """A recipe dict that trains in seconds on ``write_image_folder``'s images (32 px, 2 + 2
    epochs, the final weights chosen on validation alone) with backbone ``backbone``; ``sections`` update its tables, e.g.
    ``phases={"finetune": {"epochs": 1}}`` or ``backbone={"params": {"width": 4}}``."""
    recipe: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "data": {"source": "imagefolder", "root": str(root), "image_size": 32, "batch_size": 8, "val_fraction": 0.25},
        "backbone": {"name": backbone, "weights": "none"},
        "phases": {"extract": {"epochs": 2, "lr": 0.05}, "finetune": {"epochs": 2, "lr_ratio": 0.1}},
        # cross-fitting (train.folds) is tested where it is the point; calibration on the 9 validation images
        "train": {"weight_decay": 0.0, "folds": 1, "calibrate": "always"},
    }
    for key, value in sections.items():
        if isinstance(recipe.get(key), dict) and isinstance(value, Mapping):
            for inner, setting in value.items():
                if isinstance(recipe[key].get(inner), dict) and isinstance(setting, Mapping):
                    recipe[key][inner].update(setting)
                else:
                    recipe[key][inner] = setting
        else:
            recipe[key] = value
    return recipe


def write_recipe(path: Path, recipe: Mapping[str, Any]) -> Path:
    """``recipe`` as a TOML file at ``path``."""
    Path(path).write_text(tomli_w.dumps(dict(recipe)))
    return Path(path)


def train_run(recipe: Mapping[str, Any], output: Path) -> Path:
    """Train ``recipe`` quietly into ``output``; returns the run directory."""
    return transferkit.finetune(dict(recipe), output=output, quiet=True).run_dir


# -- pytest fixtures ------------------------------------------------------------------------------
@pytest.fixture
def tiny_backbone() -> Iterator[str]:
    """Backbone ``tiny/cnn`` (``TinyCNN``) registered for the test; yields its name."""
    with registered_backbone() as name:
        yield name


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """root/train/{red,green,blue}/ (12 each) and root/test/ (4 each), 40-px PNGs."""
    return write_image_folder(tmp_path / "images")


@pytest.fixture
def tiny_recipe(image_folder: Path, tiny_backbone: str) -> dict[str, Any]:
    """``make_recipe`` on ``image_folder`` with ``tiny/cnn``."""
    return make_recipe(image_folder, tiny_backbone)


_SESSION_RUNS: dict[Path, Path] = {}  # pytest's base temp folder (one per session) -> its tiny run


@pytest.fixture
def tiny_run(tiny_backbone: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run for this test alone, with ``tiny/cnn`` registered so that it loads.

    Trained once per session through the command line, as a user would (``transferkit finetune
    RECIPE --output DIR --set phases.finetune.epochs=1``), then copied for each test, so a test
    may write into its copy."""
    base = tmp_path_factory.getbasetemp()
    if base not in _SESSION_RUNS:
        root = tmp_path_factory.mktemp("tiny-run")
        recipe = write_recipe(root / "tiny.toml", make_recipe(write_image_folder(root / "images"), tiny_backbone))
        if main(["finetune", str(recipe), "--output", str(root / "run"), "--set", "phases.finetune.epochs=1"]) != 0:
            raise RuntimeError("transferkit.testing.tiny_run: the tiny run failed; its error is printed above")
        _SESSION_RUNS[base] = root / "run"
    return Path(shutil.copytree(_SESSION_RUNS[base], tmp_path / "run"))
