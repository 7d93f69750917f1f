"""The distribution as transferkit sees it: entry point, registry, listing, and the recipe."""

from __future__ import annotations

import importlib.metadata as metadata
import inspect
from pathlib import Path

import transferkit
from transferkit.testing import image_folder, make_recipe  # noqa: F401  (image_folder: a fixture)
from transferkit_acme import plugin

RECIPE = Path(__file__).resolve().parents[1] / "recipe.toml"


def test_entry_point_is_declared() -> None:
    eps = {ep.name: ep for ep in metadata.entry_points(group="transferkit")}
    assert eps["acme"].value == "transferkit_acme.plugin"
    assert eps["acme"].dist.name == "transferkit-acme"
    assert eps["acme"].dist.version == "0.1.0"


def test_loaded_with_its_hooks() -> None:
    info = transferkit.get_plugins().info["acme"]
    assert info.status == "ok", info.error
    assert info.version == "0.1.0" and info.distribution == "transferkit-acme"
    assert info.hooks == ["register_augmentations", "register_backbones"]


def test_components_are_registered_under_the_plugin_name() -> None:
    plugins = transferkit.get_plugins()
    backbone = plugins.registry("backbone").get("acme/tinyconvnet")
    augmentation = plugins.registry("augmentation").get("acme/posterize_noise")
    assert backbone.provider == augmentation.provider == "acme"
    assert augmentation.extras["kind"] == "image"
    assert "weights" not in backbone.extras  # self-loading: the factory reads its local file
    assert transferkit.list_backbones("acme/*") == ["acme/tinyconvnet"]
    assert transferkit.list_augmentations("acme/*") == ["acme/posterize_noise"]


def test_listing_shows_every_parameter_with_its_default() -> None:
    plugins = transferkit.get_plugins()
    assert plugins.registry("backbone").get("acme/tinyconvnet").describe().endswith("(width=16, depth=3)")
    assert plugins.registry("augmentation").get("acme/posterize_noise").describe().endswith("(bits=4, noise=8.0, p=0.5)")


def test_factories_are_introspectable() -> None:
    """transferkit checks recipe keys against these signatures: every parameter has a default and a type."""
    for factory in (plugin.tinyconvnet, plugin.posterize_noise):
        for p in inspect.signature(factory).parameters.values():
            assert p.default is not inspect.Parameter.empty, (factory.__name__, p.name)
            assert p.annotation is not inspect.Parameter.empty, (factory.__name__, p.name)


def test_the_example_recipe_validates_with_both_components() -> None:
    recipe = transferkit.load_recipe(RECIPE)
    assert recipe.backbone.name == "acme/tinyconvnet" and recipe.backbone.params == {"width": 16, "depth": 3}
    assert [s.name for s in recipe.augment.image] == ["acme/posterize_noise"]
    built = [transferkit.create_augmentation(s.name, **s.params) for s in recipe.augment.image]
    assert (built[0].bits, built[0].noise, built[0].p) == (4, 8.0, 0.5)


def test_both_components_train_in_a_tiny_run(image_folder: Path, tmp_path: Path) -> None:
    """transferkit.testing's generated images and recipe, with acme's backbone and augmentation."""
    recipe = make_recipe(image_folder, "acme/tinyconvnet", backbone={"params": {"width": 4, "depth": 2}},
                         augment={"image": [{"name": "acme/posterize_noise", "bits": 3, "p": 1.0}]})
    run = transferkit.finetune(recipe, output=tmp_path / "run", quiet=True)
    assert run.test_accuracy is not None
    predictions = transferkit.load(run.run_dir).predict(sorted((image_folder / "test").rglob("*.png")))
    assert {p.label for p in predictions} <= {"red", "green", "blue"}
