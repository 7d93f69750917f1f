"""Generated data for the calibration and rejection tests: three colour classes whose images
overlap (each image's colour is jittered by more than the classes differ), so that a tiny run
makes mistakes on validation and its probabilities are neither all right nor all certain."""
# plain helpers, not fixtures: the test modules wrap them in their own fixtures

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transferkit.testing import TINY_BACKBONE, make_recipe

CENTRES = {"amber": (150, 110, 100), "moss": (110, 150, 100), "slate": (100, 110, 150)}


def overlapping_image(centre: tuple[int, int, int], rng: np.random.Generator, size: int = 40) -> Image.Image:
    colour = np.asarray(centre, dtype=np.float64) + rng.normal(0.0, 22.0, size=3)
    pixels = colour[None, None, :] + rng.normal(0.0, 12.0, size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_overlapping_folder(root: Path, per_class: dict[str, int], seed: int = 0,
                             centres: dict[str, tuple[int, int, int]] = CENTRES) -> Path:
    """``root/<split>/<class>/*.png`` with ``per_class[split]`` images of each class."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for name, centre in centres.items():
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                overlapping_image(centre, rng).save(folder / f"{name}_{split}_{i}.png")
    return Path(root)


def overlapping_recipe(root: Path, **data: Any) -> dict[str, Any]:
    """A tiny recipe on ``write_overlapping_folder``'s images: the probe alone (no fine-tuning, its
    C by cross-validation), calibrated on whatever validation there is (``train.calibrate = "always"``)."""
    return make_recipe(root, TINY_BACKBONE, data={"val_fraction": 0.3, **data},
                       phases={"extract": {"epochs": 1, "C": None}, "finetune": {"epochs": 0}}, train={"calibrate": "always"})


def unknown_folder(root: Path, count: int = 8, seed: int = 1) -> Path:
    """Images of none of the classes (grey, yellow): a flat folder."""
    rng = np.random.default_rng(seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        centre = (128, 128, 128) if i % 2 else (170, 170, 60)
        overlapping_image(centre, rng).save(Path(root) / f"none_{i}.png")
    return Path(root)
