"""End-to-end runs of the shipped recipes on real data with real ImageNet weights (minutes, CPU)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from transferkit.engine.run import run_recipe
from transferkit.recipe_loading import load_recipe

from .conftest import SHARED_FLOWERS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _all_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)


def test_quickstart_recipe_reaches_097_on_digits(tmp_path):
    result = run_recipe(load_recipe(ROOT / "recipes" / "quickstart.toml"), output=tmp_path / "run", log=lambda m: None)
    assert result.test_accuracy >= 0.97, result.summary["test"]


@pytest.mark.skipif(not SHARED_FLOWERS.is_dir(), reason="../shared/data/flowers12 not present")
def test_flowers_recipe_reaches_095_on_flowers12(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "flowers.toml", [f"data.root={SHARED_FLOWERS}"])
    result = run_recipe(recipe, output=tmp_path / "run", log=lambda m: None)
    phases = result.summary["phases"]
    assert phases["extract"]["test_top1"] > 0.85
    assert result.test_accuracy >= 0.95, result.summary["test"]
