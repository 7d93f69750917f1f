"""The two phases: what is frozen, what trains, the BatchNorm policy and the learning rates."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from transferkit.engine.prepare import prepare
from transferkit.engine.rundir.run_dir import RunDir
from transferkit.engine.training.trainer import Trainer
from transferkit.recipe_loading import load_recipe


def _train(recipe_dict, tmp_path, **phase_overrides):
    recipe = load_recipe(recipe_dict, phase_overrides)
    prepared = prepare(recipe)
    before = copy.deepcopy(prepared.model.state_dict())
    steps: list[dict] = []
    trainer = Trainer(prepared, RunDir.create(recipe, tmp_path / "run"), on_step=[steps.append], log=lambda m: None)
    trainer.fit()
    return before, prepared.model.state_dict(), steps, trainer


def _bn_buffers(state):
    return {k: v for k, v in state.items() if k.startswith("backbone.") and ("running_" in k or "num_batches" in k)}


def test_phase1_leaves_every_backbone_tensor_bit_identical(tiny_recipe, tmp_path):
    before, after, _, _ = _train(tiny_recipe, tmp_path, phases__finetune__epochs=0)
    backbone = [k for k in before if k.startswith("backbone.")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_bn_running_statistics_unchanged_through_both_phases_under_bn_eval(tiny_recipe, tmp_path):
    before, after, _, _ = _train(tiny_recipe, tmp_path)
    buffers = _bn_buffers(before)
    assert buffers and all(torch.equal(v, after[k]) for k, v in buffers.items())
    # ...while the phase-2 backbone weights did train
    assert not torch.equal(before["backbone.stem.0.weight"], after["backbone.stem.0.weight"])


def test_bn_train_policy_does_update_running_statistics(tiny_recipe, tmp_path):
    before, after, _, _ = _train(tiny_recipe, tmp_path, phases__finetune__bn="train")
    changed = [k for k, v in _bn_buffers(before).items() if "running_mean" in k and not torch.equal(v, after[k])]
    assert changed


def test_phase2_learning_rate_is_lr_times_lr_ratio(tiny_recipe, tmp_path):
    _, _, steps, trainer = _train(
        tiny_recipe, tmp_path, phases__extract__lr=0.02, phases__extract__solver="sgd", phases__finetune__lr_ratio=0.25
    )
    peak = {phase: max(s["lr"] for s in steps if s["phase"] == phase) for phase in ("extract", "finetune")}
    assert peak["extract"] == pytest.approx(0.02)
    assert peak["finetune"] == pytest.approx(0.02 * 0.25)
    records = [json.loads(line) for line in trainer.run.metrics_file.read_text().splitlines()]
    base = {r["phase"]: r["base_lr"] for r in records if r["kind"] == "epoch"}
    assert base == {"extract": pytest.approx(0.02), "finetune": pytest.approx(0.005)}


def test_unfreeze_last_k_trains_only_the_last_stages(tiny_recipe, tmp_path):
    before, after, _, _ = _train(tiny_recipe, tmp_path, phases__finetune__unfreeze="last:1")
    assert torch.equal(before["backbone.stem.0.weight"], after["backbone.stem.0.weight"])
    assert not torch.equal(before["backbone.stage1.0.weight"], after["backbone.stage1.0.weight"])


def test_bn_policy_survives_model_train_calls(tiny_recipe):
    prepared = prepare(load_recipe(tiny_recipe))
    model = prepared.model
    model.bn_eval = True
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.head.training


def test_layer_decay_gives_each_backbone_stage_a_geometrically_smaller_lr(tiny_recipe, tmp_path):
    from transferkit.engine.training.phases import phase_plans, prepare_phase

    recipe = load_recipe(tiny_recipe, {"phases.extract.lr": 0.02, "phases.finetune.lr_ratio": 0.5, "phases.finetune.layer_decay": 0.5})
    model = prepare(recipe).model
    optimizer = prepare_phase(model, phase_plans(recipe)[1], recipe.train)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    stages = model.stages()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # the head's, first
    assert all(lr_of[id(p)] == pytest.approx(0.01) for p in model.head.parameters())
    for i, stage in enumerate(stages):  # the last stage 0.5x, the one before 0.25x, ...
        assert all(lr_of[id(p)] == pytest.approx(0.01 * 0.5 ** (len(stages) - i)) for p in stage.parameters())
    assert len(lr_of) == sum(1 for _ in model.parameters())


def test_phase2_learning_rate_is_finetune_lr_when_the_recipe_sets_it(tiny_recipe):
    from transferkit.engine.training.phases import phase_plans, prepare_phase

    tiny_recipe["phases"]["finetune"].pop("lr_ratio")
    recipe = load_recipe(tiny_recipe, {"phases.extract.lr": 0.02, "phases.finetune.lr": 0.003})
    plans = phase_plans(recipe)
    assert [p.lr for p in plans] == [0.02, 0.003]
    optimizer = prepare_phase(prepare(recipe).model, plans[1], recipe.train)
    assert {g["lr"] for g in optimizer.param_groups} == {0.003}  # every group: head and backbone
    assert phase_plans(load_recipe(tiny_recipe, {"phases.extract.lr": 0.02}))[1].lr == pytest.approx(0.002)  # unset: x 0.1
