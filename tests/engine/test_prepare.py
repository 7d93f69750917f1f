"""Building a run's splits from a recipe: ``data.test_fraction``, ``data.split_seed`` (the test set
does not move with ``seed``), one-line errors for source parameters that are keys of their own or
that the source does not take, and a source's own ``TypeError`` reported as its plugin's bug."""

from __future__ import annotations

import pytest

from transferkit.builtin.datasets import imagefolder
from transferkit.cli import main
from transferkit.components import PluginBugError
from transferkit.engine.prepare import build_splits
from transferkit.errors import DataError, RecipeError
from transferkit.recipe_loading import load_recipe
from transferkit.testing import make_recipe, plugin, registered, write_image_folder, write_recipe


@pytest.fixture
def one_folder(tmp_path):
    """A single folder of class folders (no train/ test/): the source splits it."""
    return write_image_folder(tmp_path / "images", {"all": 20}) / "all"


def _test_files(recipe: dict) -> list[str]:
    splits = build_splits(load_recipe(recipe))
    return sorted(splits.test.describe(i) for i in range(len(splits.test)))


def test_test_fraction_is_a_data_key(one_folder, tiny_backbone):
    recipe = make_recipe(one_folder, tiny_backbone, data={"test_fraction": 0.3, "val_fraction": 0.1})
    assert len(_test_files(recipe)) == 18  # 30% of 60


def test_the_test_set_does_not_move_with_seed_but_with_split_seed(one_folder, tiny_backbone):
    base = _test_files(make_recipe(one_folder, tiny_backbone, seed=0))
    assert _test_files(make_recipe(one_folder, tiny_backbone, seed=1)) == base
    assert _test_files(make_recipe(one_folder, tiny_backbone, data={"split_seed": 1})) != base


def test_data_params_seed_is_a_one_line_error(one_folder, tiny_backbone):
    with pytest.raises(RecipeError, match=r"data.params: Value error, 'seed' is a data key of its own: set data.split_seed"
                                          r"|data.params: 'seed' is a data key of its own: set data.split_seed instead"):
        load_recipe(make_recipe(one_folder, tiny_backbone, data={"params": {"seed": 3}}))


def test_plan_shows_images_per_class_and_split(one_folder, tiny_backbone, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.toml", make_recipe(one_folder, tiny_backbone, data={"test_fraction": 0.25, "val_fraction": 0.2}))
    assert main(["plan", str(recipe)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["images", "per", "class", "train", "val", "test"]
    assert lines[1].split() == ["blue", "12", "3", "5"] and lines[4].split() == ["total", "36", "9", "15"]


def test_the_probe_reads_at_8_7_of_the_native_size_unless_training_is_far_smaller():
    """FixRes: a frozen network reads a centre crop best a little above its training size (224 -> 256,
    lite1's 240 -> 272); phase 2 starts from the probe's head, which carries over to 192 px, not to 64 px."""
    from transferkit.data.preprocessing import probe_image_size

    config = {"input_size": (3, 224, 224)}
    assert probe_image_size(config, None) == 256
    assert probe_image_size(config, 192) == 256 and probe_image_size(config, 168) == 256 and probe_image_size(config, 224) == 256
    assert probe_image_size(config, 160) == 160 and probe_image_size(config, 64) == 64
    assert probe_image_size(config, 256) == 256 and probe_image_size(config, 320) == 320
    assert probe_image_size({"input_size": (3, 240, 240)}, 192) == 272
    assert probe_image_size({"input_size": (3, 260, 260)}, None) == 296


def _source_plugin(factory):
    return registered(plugin(register_datasets=lambda register: register("srcplug/folder", factory)), "srcplug")


def _a_source(root, seed=0, val_fraction=0.1, *, shards=1):
    return imagefolder(root, seed=seed, val_fraction=val_fraction)


def _a_buggy_source(root, seed=0, val_fraction=0.1):
    return len(root) + "shards"  # the plugin's own TypeError


def test_a_parameter_the_source_does_not_take_names_the_key_and_the_ones_it_does(one_folder, tiny_backbone):
    with _source_plugin(_a_source), pytest.raises(DataError) as info:
        build_splits(load_recipe(make_recipe(one_folder, tiny_backbone, data={"source": "srcplug/folder", "params": {"shardz": 2}})))
    assert str(info.value) == ("data.params: dataset 'srcplug/folder' (plugin 'srcplug') rejected its parameters: got an"
                               " unexpected keyword argument 'shardz'; its parameters: seed, val_fraction, shards")


def test_a_typeerror_inside_a_source_is_the_plugins_bug_not_its_parameters(one_folder, tiny_backbone):
    with _source_plugin(_a_buggy_source), pytest.raises(PluginBugError) as info:
        build_splits(load_recipe(make_recipe(one_folder, tiny_backbone, data={"source": "srcplug/folder"})))
    assert str(info.value).startswith("dataset 'srcplug/folder' (plugin 'srcplug') has a bug: its factory raised TypeError:")
    assert "(at test_prepare.py:" in str(info.value) and "not a problem with the parameters" in str(info.value)
