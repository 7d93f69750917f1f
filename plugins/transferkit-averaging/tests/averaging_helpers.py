"""Shared by this plugin's tests: transferkit.testing's tiny backbone and run, an image folder
and a recipe (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferkit.testing import make_recipe, tiny_backbone, tiny_run, write_image_folder  # noqa: F401  (fixtures)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """train/ (10 per class) and test/ (4 per class) of 36 x 44 px images."""
    return write_image_folder(tmp_path / "images", {"train": 10, "test": 4}, size=(36, 44))


def recipe(folder: Path, backbone: str, **averaging) -> dict:
    out = make_recipe(
        folder, backbone, name="avg",
        data={"batch_size": 6, "val_fraction": 0.2},
        phases={"extract": {"epochs": 2, "lr": 0.05}, "finetune": {"epochs": 2, "lr_ratio": 0.5}},
    )
    if averaging:
        out["averaging"] = averaging
    return out
