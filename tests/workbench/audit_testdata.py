"""Generated data for the audit tests: images that differ from each other as photos do (a random
6x6 block pattern each, tinted by the class colour) and a backbone whose features are the pooled
pixels, so that distinct images have distinct features and copies have the same ones."""
# plain helpers, not fixtures: the test modules wrap them in their own fixtures

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from transferkit.testing import registered_backbone

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}
BACKBONE = "test/pooled-pixels"


class PooledPixels(nn.Module):
    """Features = the image average-pooled to 6x6 (108 numbers, non-negative as after a ReLU)."""

    num_features = 108

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1), requires_grad=False)
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.data_config = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "input_size": (3, 48, 48)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.pool(x) * self.scale).flatten(1)


@contextlib.contextmanager
def pooled_pixels_registered() -> Iterator[str]:
    """Backbone ``test/pooled-pixels`` registered through an in-process plugin while inside."""
    with registered_backbone(BACKBONE, lambda pretrained=False: PooledPixels(), plugin_name="audit-test-plugin") as name:
        yield name


def pattern_image(colour: tuple[int, int, int], rng: np.random.Generator, size: int = 48) -> Image.Image:
    blocks = rng.choice([0.02, 1.0], size=(6, 6))
    tint = np.kron(blocks, np.ones((size // 6, size // 6)))[..., None] * np.asarray(colour, dtype=np.float64)
    noise = rng.normal(0, 4, size=(size, size, 3))
    return Image.fromarray(np.clip(tint + noise, 0, 255).astype(np.uint8))


def write_pattern_folder(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for cls, colour in COLOURS.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pattern_image(colour, rng).save(root / split / cls / f"{cls}_{split}_{i}.png")
    return root


def plant_issues(root: Path) -> dict[str, object]:
    """Two labels moved to a wrong class, a copy and a re-encoded copy of train images in test,
    and a duplicate within train whose file name needs escaping in HTML. Returns where they are."""
    flips = {}
    for source, target in (("red/red_train_0.png", "green"), ("blue/blue_train_1.png", "red")):
        moved = root / "train" / target / Path(source).name
        shutil.move(root / "train" / source, moved)
        flips[str(moved)] = Path(source).parent.name
    exact = root / "test" / "green" / "copy_of_green_train_3.png"
    shutil.copyfile(root / "train" / "green" / "green_train_3.png", exact)
    reencoded = root / "test" / "blue" / "reencoded_blue_train_5.jpg"
    Image.open(root / "train" / "blue" / "blue_train_5.png").save(reencoded, quality=85)
    odd = root / "train" / "red" / "odd<script>&name.png"
    shutil.copyfile(root / "train" / "red" / "red_train_4.png", odd)
    return {
        "flips": flips,
        "leaks": {str(exact): str(root / "train" / "green" / "green_train_3.png"),
                  str(reencoded): str(root / "train" / "blue" / "blue_train_5.png")},
        "duplicate": {str(odd), str(root / "train" / "red" / "red_train_4.png")},
        "odd": str(odd),
    }


def planted_folder(root: Path) -> tuple[Path, dict[str, object]]:
    """root/train/{red,green,blue}/ (16 each) and root/test/ (5 each), with ``plant_issues``."""
    write_pattern_folder(root, {"train": 16, "test": 5})
    return root, plant_issues(root)


def audit_recipe_dict() -> dict[str, object]:
    return {"name": "audit-test", "seed": 0, "backbone": {"name": BACKBONE, "weights": "none"},
            "data": {"image_size": 48, "batch_size": 16}}
