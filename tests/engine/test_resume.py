"""Resume: a run stopped in the middle of a phase ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from transferkit.engine.run import run_recipe
from transferkit.recipe_loading import load_recipe


class Stop(Exception):
    pass


def _stop_at(phase: str, epoch: int, step: int):
    def callback(info):
        if (info["phase"], info["epoch"], info["step"]) == (phase, epoch, step):
            raise Stop

    return callback


@pytest.mark.parametrize("where, solver", [
    (("extract", 1, 2), "sgd"), (("finetune", 0, 3), "sgd"), (("finetune", 1, 1), "sgd"),
    (("finetune", 0, 3), "lbfgs"),  # phase 1 a probe; the final choice reloads it from checkpoints/phase1.safetensors
])
def test_resume_mid_phase_gives_identical_final_weights(tiny_recipe, tmp_path, where, solver):
    tiny_recipe["phases"]["extract"]["solver"] = solver
    if solver == "lbfgs":
        tiny_recipe["train"]["final"] = "auto"  # the choice among the probe, the fine-tuned model and their mixes
    tiny_recipe["train"]["checkpoint_every_steps"] = 1
    tiny_recipe["data"]["batch_size"] = 6  # 5 steps an epoch
    tiny_recipe["backbone"]["head_dropout"] = 0.3  # draws from the torch RNG: resume must restore it
    recipe = load_recipe(tiny_recipe)
    quiet = {"log": lambda m: None}
    full = run_recipe(recipe, output=tmp_path / "full", **quiet)

    with pytest.raises(Stop):
        run_recipe(recipe, output=tmp_path / "cut", on_step=[_stop_at(*where)], **quiet)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = run_recipe(recipe, resume=tmp_path / "cut", **quiet)

    a = load_file(str(full.run_dir / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    def epochs(run):
        records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        return [(r["phase"], r["epoch"]) for r in records if r["kind"] == "epoch"]
    assert epochs(resumed.run_dir) == epochs(full.run_dir)


def test_persistent_loader_workers_give_the_weights_of_a_run_without_workers(tiny_recipe, tmp_path):
    """Two loader workers, kept across epochs (and cut and resumed mid-phase), augment every epoch as
    the main process does: the same final weights as a run without workers."""
    tiny_recipe["phases"]["extract"]["cache_features"] = False  # phase 1 reads images too
    tiny_recipe["train"]["checkpoint_every_steps"] = 1
    tiny_recipe["data"]["batch_size"] = 6
    quiet = {"log": lambda m: None}
    full = run_recipe(load_recipe(tiny_recipe), output=tmp_path / "full", **quiet)
    tiny_recipe["data"]["num_workers"] = 2
    recipe = load_recipe(tiny_recipe)
    with pytest.raises(Stop):
        run_recipe(recipe, output=tmp_path / "cut", on_step=[_stop_at("finetune", 1, 2)], **quiet)
    resumed = run_recipe(recipe, resume=tmp_path / "cut", **quiet)

    a = load_file(str(full.run_dir / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "a run with loader workers differs from one without"


def test_resume_requires_a_checkpoint(tmp_path, tiny_recipe):
    from transferkit.errors import TransferkitError

    with pytest.raises(TransferkitError, match="nothing to resume"):
        run_recipe(load_recipe(tiny_recipe), resume=tmp_path, log=lambda m: None)


def test_resume_with_another_number_of_processes_is_refused_naming_the_number(tiny_recipe, tmp_path):
    """Each process's share of an epoch, and the steps in it, depend on the number of processes: a
    run trained by one process is not resumed by two (torchrun), nor the other way round."""
    from transferkit.engine.resume import reopen
    from transferkit.errors import TransferkitError

    tiny_recipe["train"]["checkpoint_every_steps"] = 1
    recipe = load_recipe(tiny_recipe)
    with pytest.raises(Stop):
        run_recipe(recipe, output=tmp_path / "cut", on_step=[_stop_at("finetune", 0, 1)], log=lambda m: None)
    assert reopen(recipe, tmp_path / "cut", None, None, world_size=1).checkpoint["world_size"] == 1
    with pytest.raises(TransferkitError, match=r"trained as 1 process\(es\), this is 2; resume it with 1 \(torchrun"):
        reopen(recipe, tmp_path / "cut", None, None, world_size=2)
