"""The weights a run ends with (train.final): WiSE-FT's end points are exactly the probe and the
fine-tuned model, the choice never falls below the probe on validation, last and best as named."""

from __future__ import annotations

import itertools
import json
import random

import pytest
import torch
from safetensors.torch import load_file

from transferkit.engine.final.choice import Candidate, choose, interpolate, model_with
from transferkit.engine.run import run_recipe
from transferkit.recipe_loading import load_recipe
from transferkit.testing import TinyCNN


def _states(seed: int):
    torch.manual_seed(seed)
    a, b = TinyCNN(), TinyCNN()
    return a, b


def test_interpolation_ends_are_exactly_the_two_models_and_the_middle_is_the_mean():
    a, b = _states(0)
    sa, sb = a.state_dict(), b.state_dict()
    for key in sb:
        assert torch.equal(interpolate(sa, sb, 0.0)[key], sa[key])
        assert torch.equal(interpolate(sa, sb, 1.0)[key], sb[key])
        if sb[key].is_floating_point():
            assert torch.allclose(interpolate(sa, sb, 0.5)[key], (sa[key] + sb[key]) / 2)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model_with(b, interpolate(sa, sb, 0.0)).eval()(x), a.eval()(x))
        assert torch.equal(model_with(a, interpolate(sa, sb, 1.0)).eval()(x), b.eval()(x))


def _candidate(name, alpha, top1, loss):
    return Candidate(name, alpha, None, val={"top1": top1, "loss": loss})


def test_choice_is_accuracy_then_log_loss_then_the_model_closest_to_the_probe():
    probe, mid, ft = _candidate("probe", 0.0, 0.9, 0.3), _candidate("wise-0.5", 0.5, 0.95, 0.25), _candidate("finetuned", 1.0, 0.95, 0.2)
    assert choose([probe, mid, ft], n_val=20).name == "finetuned"  # tie on accuracy: lower log-loss
    ft.val["loss"] = 0.25
    assert choose([probe, mid, ft], n_val=20).name == "wise-0.5"  # full tie: the smaller alpha
    assert choose([_candidate("probe", 0.0, 1.0, 0.9), ft], n_val=20).name == "probe"  # accuracy first


def test_accuracy_differences_within_the_noise_of_validation_go_to_the_lower_log_loss():
    """What a digits run met: 144 validation images, wise-0.25 two images ahead of the fine-tuned
    model, whose log-loss was clearly lower (and whose test accuracy was 0.986 against 0.950)."""
    candidates = [_candidate("probe", 0.0, 137 / 144, 0.343), _candidate("wise-0.25", 0.25, 140 / 144, 0.326),
                  _candidate("wise-0.5", 0.5, 138 / 144, 0.313), _candidate("wise-0.75", 0.75, 136 / 144, 0.260),
                  _candidate("finetuned", 1.0, 138 / 144, 0.212)]
    assert choose(candidates, n_val=144).name == "finetuned"
    candidates[-1].val["top1"] = 130 / 144  # far behind (5 standard errors): accuracy decides again
    assert choose(candidates, n_val=144).name == "wise-0.5"
    candidates[0].val["top1"] = 139 / 144  # the probe's accuracy is a floor
    assert choose(candidates, n_val=144).name in ("probe", "wise-0.25")


def test_auto_never_ends_below_the_probe_on_validation():
    rng = random.Random(0)
    for _ in range(500):
        n = rng.choice([10, 25, 72])
        candidates = [_candidate(f"c{a}", a, rng.randint(0, n) / n, rng.uniform(0.05, 2.0)) for a in (0.0, 0.25, 0.5, 0.75, 1.0)]
        assert choose(candidates, n_val=n).val["top1"] >= candidates[0].val["top1"]


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_chooses_among_the_probe_and_the_finetuned_model_on_validation(tiny_recipe, tmp_path):
    tiny_recipe["data"]["val_fraction"] = 0.25
    tiny_recipe["phases"]["finetune"].update(epochs=2, lr_ratio=10.0)  # move far from the probe
    tiny_recipe["train"].update(final="auto", test_candidates=True, calibrate="always")
    del tiny_recipe["phases"]["extract"]["C"]  # the probe as a run fits it: C by cross-validation
    result = run_recipe(load_recipe(tiny_recipe), output=tmp_path / "run", log=lambda m: None)
    final = result.summary["final"]
    candidates = final["candidates"]
    assert list(candidates) == ["probe", "wise-0.25", "wise-0.5", "wise-0.75", "finetuned"]
    assert candidates[final["chosen"]]["val_top1"] >= candidates["probe"]["val_top1"]
    epochs = [r for r in _metrics(result.run_dir) if r["kind"] == "epoch"]
    probe_epoch, last_epoch = epochs[0], epochs[-1]  # phase 1's val figures come from cached features
    assert candidates["probe"]["val_top1"] == probe_epoch["val_top1"]
    assert candidates["probe"]["val_loss"] == pytest.approx(probe_epoch["val_loss"], abs=1e-5)
    assert candidates["finetuned"]["val_top1"] == last_epoch["val_top1"]
    assert candidates["finetuned"]["val_loss"] == pytest.approx(last_epoch["val_loss"], abs=1e-5)
    assert result.summary["test"]["top1"] == candidates[final["chosen"]]["test_top1"]
    # the exported model is the chosen one, and a resume-free reload gives its test figure
    exported = load_file(str(result.run_dir / "model.safetensors"))
    assert all(torch.equal(exported[k], v) for k, v in result.model.state_dict().items())


@pytest.mark.parametrize("policy", ["last", "best"])
def test_last_and_best_are_what_they_say(tiny_recipe, tmp_path, policy):
    tiny_recipe["data"]["val_fraction"] = 0.25
    tiny_recipe["phases"]["finetune"]["epochs"] = 2
    tiny_recipe["train"]["final"] = policy
    result = run_recipe(load_recipe(tiny_recipe), output=tmp_path / "run", log=lambda m: None)
    exported = load_file(str(result.run_dir / "model.safetensors"))
    if policy == "last":
        expected = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    else:
        expected = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
        best = max((r for r in _metrics(result.run_dir) if r["kind"] == "epoch"), key=lambda r: (r["val_top1"], r["phase"], r["epoch"]))
        assert result.summary["best_val_or_train_top1"] == best["val_top1"]
    assert all(torch.equal(exported[k], expected[k].cpu()) for k in exported)
    assert result.summary.get("final", {}).get("policy", "last") == policy


def test_the_wise_grid_is_ordered_from_the_probe_to_the_finetuned_model():
    from transferkit.engine.final.choice import ALPHAS

    assert ALPHAS[0] == 0.0 and ALPHAS[-1] == 1.0 and all(a < b for a, b in itertools.pairwise(ALPHAS))
