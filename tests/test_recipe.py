"""Recipes: validation errors are one line naming the file, the key and the fix; overrides work."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferkit.cli import main
from transferkit.errors import RecipeError
from transferkit.recipe_loading import load_recipe, parse_override
from transferkit.testing import write_multilabel_csv, write_recipe

RECIPES = sorted(Path(__file__).resolve().parents[1].joinpath("recipes").glob("*.toml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path, monkeypatch, tmp_path):
    monkeypatch.chdir(path.parents[1])
    recipe = load_recipe(path, check_components=True, check_data=False)
    assert recipe.name == path.stem
    # the multi-label recipe names no data of ours (--set data.root=YOUR.csv): a generated manifest
    data = ["--set", f"data.root={write_multilabel_csv(tmp_path)}"] if recipe.task == "multilabel" else []
    assert main(["validate", str(path), *data]) == 0


BAD = [
    ({"data": {"batch_sise": 3}}, "data.batch_sise: unknown key"),
    ({"data": {"batch_size": -1}}, "data.batch_size: Input should be greater than 0"),
    ({"data": {"batch_size": "many"}}, "data.batch_size: Input should be a valid integer"),
    ({"phases": {"extract": {"lr": -0.1}}}, "phases.extract.lr: Input should be greater than 0"),
    ({"phases": {"finetune": {"unfreeze": "some"}}}, 'phases.finetune.unfreeze: must be "all", "none" or "last:K"'),
    ({"phases": {"finetune": {"bn": "frozen"}}}, "phases.finetune.bn: Input should be 'eval' or 'train'"),
    ({"phases": {"extract": {"epochs": 0}, "finetune": {"epochs": 0}}}, "nothing to train"),
    ({"backbone": {"name": "timm/efficientnet_lite9"}},
     "backbone.name: unknown backbone 'timm/efficientnet_lite9'; did you mean timm/efficientnet_lite"),
    ({"backbone": {"weights": "missing/file.pth"}}, "backbone.weights: file 'missing/file.pth' not found"),
    ({"backbone": {"sha256": "abc"}}, "backbone.sha256: must be 64 hexadecimal characters"),
    ({"data": {"root": "does/not/exist"}}, "data.root: 'does/not/exist' does not exist"),
    ({"augment": {"image": [{"name": "hflipp"}]}}, "augment.image[0].name: unknown augmentation 'hflipp'; did you mean hflip"),
    ({"train": {"device": "tpu"}}, 'train.device: must be "auto"'),
    # issue 24, item 9: every number finite and bounded, refused by validate before a run
    ({"seed": 2**64}, "seed: Input should be less than or equal to 9223372036854775807"),
    ({"phases": {"extract": {"warmup_epochs": float("inf")}}}, "phases.extract.warmup_epochs: Input should be a finite number"),
    ({"data": {"crop_pct": 1e-300}}, "data.crop_pct: Input should be greater than or equal to 0.1"),
    ({"phases": {"extract": {"C": 1e-320}}}, "phases.extract.C: Input should be greater than or equal to 0.00000001 (got 1e-320)"),
    ({"train": {"weight_decay": float("nan")}}, "train.weight_decay: Input should be a finite number"),
    ({"data": {"batch_size": 10**12}}, "data.batch_size: Input should be less than or equal to 65536"),
    # issue 23: strict types, and "did you mean" for a recipe key as for a backbone
    ({"data": {"batch_size": "32"}}, "data.batch_size: Input should be a valid integer, not a string (got '32'); write the value"),
    ({"data": {"hflip": 1}}, "data.hflip: Input should be a valid boolean"),
    ({"phases": {"extract": {"lrr": 0.1}}},
     "phases.extract.lrr: unknown key; remove it or check its spelling; did you mean phases.extract.lr?"),
    ({"train": {"early_stopping": {"patience": 2, "metrc": "val_loss"}}},
     "train.early_stopping.metrc: unknown key; remove it or check its spelling; did you mean train.early_stopping.metric?"),
    # issue 22: phase 2's LR is given one way
    ({"phases": {"finetune": {"lr": 3e-4, "lr_ratio": 0.1}}}, "phases.finetune: lr and lr_ratio are both set; keep one"),
]


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


@pytest.mark.parametrize("change,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_recipe_is_one_line_naming_file_and_key(tmp_path, image_folder, change, message, capsys):
    base = {"name": "bad", "data": {"source": "imagefolder", "root": str(image_folder)}}
    path = write_recipe(tmp_path / "bad.toml", _merge(base, change))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text
    # the CLI: exit code 2, one line on stderr, nothing written
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["finetune", str(path), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_missing_recipe_file_and_bad_toml(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(broken)


@pytest.mark.parametrize("content,message", [
    (b'name = "caf\xe9"\n', "not valid TOML: not UTF-8 text (byte 0xe9 at offset 11); save it as UTF-8"),
    (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "not valid TOML: nested too deeply"),
], ids=["latin-1", "5000-deep"])
def test_a_recipe_that_is_not_toml_text_is_one_line_in_validate(tmp_path, content, message, capsys):
    path = tmp_path / "r.toml"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: {message}" in err


def test_unfreeze_beyond_the_backbones_stages_is_refused_by_validate(tiny_recipe, tmp_path, capsys):
    tiny_recipe["phases"]["finetune"]["unfreeze"] = "last:99"
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "phases.finetune.unfreeze: last:99 asks for more stages than tiny/cnn has" in err


def test_overrides_are_parsed_as_toml_values(image_folder):
    assert parse_override("phases.extract.epochs=3") == ("phases.extract.epochs", 3)
    assert parse_override("data.root=some/dir") == ("data.root", "some/dir")
    assert parse_override("data.crop_scale=[0.5, 1.0]") == ("data.crop_scale", [0.5, 1.0])
    recipe = load_recipe({"data": {"root": str(image_folder)}}, ["phases.extract.epochs=7", "train.optimizer=sgd"])
    assert recipe.phases.extract.epochs == 7 and recipe.train.optimizer == "sgd"
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        parse_override("novalue")


def test_override_errors_name_the_key(image_folder):
    with pytest.raises(RecipeError, match=r"phases\.extract\.epochs: Input should be a valid integer"):
        load_recipe({"data": {"root": str(image_folder)}}, ["phases.extract.epochs=three"])


def test_finetune_lr_is_phase_2s_lr_given_instead_of_lr_ratio(tmp_path):
    def load(data, overrides=()):
        return load_recipe(data, overrides, check_components=False, check_data=False)

    assert load({}).phases.finetune.lr is None and load({}).phases.finetune.lr_ratio == 0.1  # recipes without it: as before
    recipe = load({"phases": {"finetune": {"lr": 3e-4}}})
    assert recipe.phases.finetune.lr == 3e-4 and "lr_ratio" not in recipe.to_dict()["phases"]["finetune"]
    assert load(recipe).phases.finetune.lr == 3e-4  # what a run writes (recipe.toml, checkpoints) loads again
    assert load(write_recipe(tmp_path / "r.toml", recipe.to_dict())) == recipe
    # an override of one replaces the recipe's other; both at once are refused
    assert load({"phases": {"finetune": {"lr_ratio": 0.2}}}, ["phases.finetune.lr=1e-4"]).phases.finetune.lr == 1e-4
    assert load(recipe, {"phases.finetune.lr_ratio": 0.5}).phases.finetune.lr is None
    with pytest.raises(RecipeError, match="^recipe: phases.finetune: lr and lr_ratio are both set; keep one"):
        load({}, {"phases.finetune.lr": 1e-4, "phases.finetune.lr_ratio": 0.5})


def test_unknown_augmentation_parameter_is_named(image_folder):
    with pytest.raises(RecipeError, match=r"augment\.image\[0\]: rotate: .*unexpected keyword argument 'angle'.*its parameters: limit, p"):
        load_recipe({"data": {"root": str(image_folder)}, "augment": {"image": [{"name": "rotate", "angle": 3}]}})


def test_evaluation_never_augments(tiny_recipe):
    from transferkit.engine.prepare import prepare

    tiny_recipe["augment"] = {"image": [{"name": "rotate", "limit": 30, "p": 1.0}, {"name": "grayscale", "p": 1.0}]}
    prepared = prepare(load_recipe(tiny_recipe))
    names = [type(s).__name__ for s in prepared.eval_transform.steps]
    assert names == ["SmallestMaxSize", "CenterCrop"]
    assert "Rotate" in [type(s).__name__ for s in prepared.train_transform.steps]
