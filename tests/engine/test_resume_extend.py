"""Continuing work on a run: early stopping, ``--resume --extend``, ``--resume`` of a finished run,
and a new run starting from a trained one (``backbone.weights = RUN_DIR``)."""

from __future__ import annotations

import json
import shutil

import pytest
import tomllib
import torch
from safetensors.torch import load_file

from transferkit.cli import main
from transferkit.engine.prepare import build_model
from transferkit.engine.rundir.model_files import write_manifest
from transferkit.engine.rundir.run_dir import RunDir
from transferkit.engine.training.early_stopping import EarlyStopper
from transferkit.recipe_loading import load_recipe
from transferkit.testing import make_recipe, registered_backbone, train_run, write_image_folder, write_recipe

from ..older_runs import as_before_key


def _from(recipe: dict, weights) -> dict:
    recipe["backbone"]["weights"] = str(weights)
    return recipe


def _epochs(run, phase: str) -> list[int]:
    return [r["epoch"] for r in RunDir(run).read_metrics() if r.get("kind") == "epoch" and r["phase"] == phase]


def test_early_stopper_counts_epochs_without_improvement():
    stopper = EarlyStopper(patience=2, metric="val_loss", min_delta=0.01)
    assert not stopper.update(1, {"val_loss": 1.0}) and not stopper.update(2, {"val_loss": 0.995})
    assert stopper.update(3, {"val_loss": 0.999}) and (stopper.best, stopper.best_epoch) == (1.0, 1)
    higher = EarlyStopper(patience=1, metric="val_top1")
    assert not higher.update(1, {"val_top1": 0.5}) and not higher.update(2, {"val_top1": 0.6}) and higher.update(3, {"val_top1": 0.6})


def test_early_stopping_ends_the_phase_and_the_final_weights_are_still_chosen(tiny_recipe, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.toml", make_recipe(
        tiny_recipe["data"]["root"], tiny_recipe["backbone"]["name"], phases={"finetune": {"epochs": 6}},
        train={"early_stopping": {"patience": 1, "metric": "val_top1", "min_delta": 0.5}, "final": "auto"}))
    assert main(["finetune", str(recipe), "--output", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert ("early stopping: val_top1 has not improved for 1 epoch(s) (best 1.0000 at epoch 1);"
            " phase finetune stops after epoch 2 of 6") in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["phases"]["finetune"]["early_stopped"]["epoch"] == 2 and _epochs(tmp_path / "run", "finetune") == [1, 2]
    assert summary["final"]["policy"] == "auto" and summary["final"]["chosen"] in summary["final"]["candidates"]
    # resuming the stopped run trains no further epoch; extending it trains on from where it stopped
    assert main(["finetune", "--resume", str(tmp_path / "run"), "--extend", "finetune=+1"]) == 0
    assert _epochs(tmp_path / "run", "finetune") == [1, 2, 3]


def test_resume_of_a_finished_run_says_so_and_rewrites_nothing(tiny_run, capsys):
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tiny_run.iterdir() if p.is_file()}
    assert main(["finetune", "--resume", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert f"{tiny_run}: the run is finished (test accuracy " in out and f"To train more: --resume {tiny_run} --extend finetune=+2" in out
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tiny_run.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == {k: v for k, v in before.items() if k != ".lock"}


def test_extend_trains_more_epochs_of_a_finished_run(tiny_run, capsys):
    assert _epochs(tiny_run, "finetune") == [1]
    assert main(["finetune", "--resume", str(tiny_run), "--extend", "finetune=+2"]) == 0
    assert f"extending {tiny_run}: finetune to 3 epochs" in capsys.readouterr().out
    assert _epochs(tiny_run, "finetune") == [1, 2, 3]
    assert tomllib.loads((tiny_run / "recipe.toml").read_text())["phases"]["finetune"]["epochs"] == 3
    assert RunDir(tiny_run).read_summary()["phases"]["finetune"]["test_top1"] is not None
    assert main(["finetune", "--resume", str(tiny_run), "--extend", "extract=+1"]) == 2
    assert "phase extract is a converged logistic probe" in capsys.readouterr().err


def test_a_new_run_starts_from_a_trained_run(tiny_backbone, tmp_path, capsys):
    run = train_run(make_recipe(write_image_folder(tmp_path / "images"), tiny_backbone), tmp_path / "run")  # one network
    trained = load_file(str(run / "model.safetensors"))
    same = load_recipe(_from(make_recipe(tmp_path, tiny_backbone), run), check_data=False)
    model = build_model(same, ["blue", "green", "red"])
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())  # backbone and head
    other = write_image_folder(tmp_path / "two", {"train": 4}, colours={"cyan": (0, 200, 200), "pink": (250, 100, 200)})
    recipe = write_recipe(tmp_path / "r.toml", _from(make_recipe(other, tiny_backbone), run / "model.safetensors"))
    assert main(["validate", str(recipe)]) == 0
    new = build_model(load_recipe(recipe), ["cyan", "pink"])
    assert new.head.weight.shape[0] == 2
    assert all(torch.equal(v, trained[f"backbone.{k}"]) for k, v in new.backbone.state_dict().items())


def test_a_new_run_starts_from_an_ensemble_runs_finetuned_network(tiny_run, tiny_backbone, tmp_path):
    """``tiny_run`` ended with the probe + fine-tuned ensemble (the default): a run started from it
    takes its fine-tuned network, under a new head (the ensemble's head reads both networks)."""
    trained = load_file(str(tiny_run / "model.safetensors"))
    logged: list[str] = []
    model = build_model(load_recipe(_from(make_recipe(tmp_path, tiny_backbone), tiny_run), check_data=False),
                        ["blue", "green", "red"], log=logged.append)
    assert all(torch.equal(v, trained[f"backbone.finetuned.{k}"]) for k, v in model.backbone.state_dict().items())
    assert model.head.weight.shape == (3, trained["head.weight"].shape[1] // 2)
    assert logged == [f"starting from the trained run {tiny_run}: its fine-tuned backbone, with a new head"
                      " (the run ended with an ensemble of two networks)"]


def test_starting_from_a_run_of_another_backbone_is_refused(tiny_run, tmp_path):
    copy = shutil.copytree(tiny_run, tmp_path / "other")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["backbone"]["name"] = "timm/resnet18"
    write_manifest(manifest, copy)  # its checksum recorded, as a run of that backbone would have it
    recipe = load_recipe(_from(make_recipe(tmp_path, "tiny/cnn"), copy), check_data=False)
    with pytest.raises(Exception, match=r"is a run of backbone 'timm/resnet18', not 'tiny/cnn'; set backbone.name = 'timm/resnet18'"):
        build_model(recipe, ["blue", "green", "red"])


def test_a_run_from_before_split_seed_resumes_splitting_with_its_seed(tiny_run, capsys):
    """Recipes gained data.split_seed; a run started before it resumes (no "recipe differs")."""
    as_before_key(tiny_run, "data", "split_seed", "split_seed = 0\n")
    assert main(["finetune", "--resume", str(tiny_run)]) == 0, capsys.readouterr().err


def test_a_run_under_a_components_old_name_is_the_same_backbone(tiny_run, tmp_path):
    """A run written before a component was renamed (its manifest holds the old name, now an alias)
    starts a new run of the new name, and the other way round."""
    copy = shutil.copytree(tiny_run, tmp_path / "old-name")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["backbone"]["name"] = "tinycnn"
    write_manifest(manifest, copy)
    with registered_backbone("tiny/renamed", aliases=("tinycnn",), plugin_name="renaming-plugin"):
        for name in ("tiny/renamed", "tinycnn"):
            recipe = load_recipe(_from(make_recipe(tmp_path, name), copy), check_data=False)
            assert build_model(recipe, ["blue", "green", "red"]).head.weight.shape[0] == 3
