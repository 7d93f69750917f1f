"""The built-in backbones' names and weight facts, cached per timm/torchvision version; and the
recipe's backbone profile for ``validate``, cached for built-in backbones only."""

from __future__ import annotations

import json

import pytest
import timm
import torchvision

from transferkit.builtin import backbone_catalog
from transferkit.builtin.backbone_catalog import catalog, catalog_file
from transferkit.engine.preflight import memory_estimate
from transferkit.engine.preflight.memory_estimate import measure_profile, recipe_profile
from transferkit.models.backbone import create_backbone
from transferkit.recipe_loading import load_recipe


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_CACHE_DIR", str(tmp_path / "cache"))
    catalog.cache_clear()
    yield tmp_path / "cache"
    catalog.cache_clear()


def test_the_catalog_holds_what_timm_and_torchvision_say_and_is_read_back(cache, monkeypatch):
    found = catalog()
    assert found.timm_models == timm.list_models()
    assert found.timm_tags == [n for n in timm.list_pretrained() if "." in n]
    cfg = timm.models.get_pretrained_cfg("vit_small_patch14_dinov2.lvd142m")
    assert found.timm["vit_small_patch14_dinov2.lvd142m"]["hf_hub_id"] == cfg.hf_hub_id
    assert found.timm["tf_efficientnet_lite0"]["tag"] == timm.models.get_pretrained_cfg("tf_efficientnet_lite0").tag
    assert found.torchvision["resnet18"]["url"] == torchvision.models.get_model_weights("resnet18").DEFAULT.url
    path = catalog_file()
    assert path.parent == cache and f"timm-{timm.__version__}" in path.name and oct(path.stat().st_mode)[-3:] == "644"
    catalog.cache_clear()
    monkeypatch.setattr(backbone_catalog, "build_catalog", lambda: pytest.fail("the file was not read"))
    assert catalog() == found


def test_a_damaged_or_unwritable_cache_is_built_again(cache, monkeypatch):
    cache.mkdir()
    catalog_file().write_text("{not json")
    assert "resnet50" in catalog().timm_models
    assert json.loads(catalog_file().read_text())["format"] == backbone_catalog.FORMAT
    catalog.cache_clear()
    monkeypatch.setenv("TRANSFERKIT_CACHE_DIR", "/proc/no-such-place")  # cannot be created
    assert "resnet50" in catalog().timm_models


def test_the_profile_of_a_built_in_backbone_is_kept_and_equals_a_fresh_measure(cache, tiny_recipe, tiny_backbone, monkeypatch):
    recipe = load_recipe({**tiny_recipe, "backbone": {"name": "timm/tf_efficientnet_lite0", "weights": "none"}})
    first = recipe_profile(recipe)
    assert first == measure_profile(create_backbone("timm/tf_efficientnet_lite0", weights="none", readout="auto"), recipe.data.image_size)
    assert first.stages == 9 and first.native == 224  # stem, 7 blocks, head
    monkeypatch.setattr(memory_estimate, "measure_profile", lambda *a: pytest.fail("measured again"))
    assert recipe_profile(recipe) == first
    tiny = load_recipe(tiny_recipe)  # a plugin's backbone may change under the same name: never kept
    monkeypatch.undo()
    monkeypatch.setenv("TRANSFERKIT_CACHE_DIR", str(cache))
    recipe_profile(tiny)
    assert all(tiny_backbone not in key for key in json.loads((cache / "memory-profiles.json").read_text()))
