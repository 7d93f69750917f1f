"""transferkit sweep: grid and random trials as run directories, the ranked results table,
best_recipe.toml, up-front validation, failed trials, --resume."""

from __future__ import annotations

import csv
import itertools
import json
import shutil

import numpy as np
import pytest

import transferkit
from transferkit.cli import main
from transferkit.engine.prepare import build_splits
from transferkit.recipe_loading import load_recipe, read_toml
from transferkit.testing import TinyCNN, registered_backbone, write_recipe
from transferkit.workbench.sweep.results import read_results
from transferkit.workbench.sweep.trials import plan_sweep, sweep

from ...conftest import needs_plugin_component


def _get(recipe: dict, key: str):
    for part in key.split("."):
        recipe = recipe[part]
    return recipe


@pytest.fixture
def fast_recipe(tiny_recipe):
    """Phase 1 only (head on cached features): a trial takes about a second."""
    tiny_recipe["phases"]["finetune"]["epochs"] = 0
    return tiny_recipe


class Poisoned(TinyCNN):
    """NaN features when built with ``poison=True``: the first training step's loss is NaN."""

    def __init__(self, poison: bool) -> None:
        super().__init__()
        self.poison = poison

    def forward(self, x):
        out = super().forward(x)
        return out * float("nan") if self.poison else out


@pytest.fixture
def poison_plugin():
    with registered_backbone("tiny/poison", lambda pretrained=False, poison=False: Poisoned(poison), "poison-plugin"):
        yield


def test_a_2x2_grid_runs_4_trials_ranks_them_on_val_and_writes_the_best_recipe(fast_recipe, tmp_path, capsys):
    path = write_recipe(tmp_path / "tiny.toml", fast_recipe)
    out = tmp_path / "sweep"
    code = main(["sweep", str(path), "--set", "phases.extract.epochs=2", "--grid", "phases.extract.lr=0.003,0.05",
                 "--grid", "train.label_smoothing=0.0,0.2", "--output", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    trials = sorted(p.name for p in out.iterdir() if p.name.startswith("trial-"))
    assert trials == ["trial-000", "trial-001", "trial-002", "trial-003"]
    seen = set()
    for trial in trials:
        recipe = read_toml(out / trial / "recipe.toml")
        seen.add((recipe["phases"]["extract"]["lr"], recipe["train"]["label_smoothing"]))
        assert recipe["phases"]["extract"]["epochs"] == 2  # --set applies to every trial
        assert (out / trial / "model.safetensors").is_file() and (out / trial / "train.log").is_file()
    assert seen == set(itertools.product([0.003, 0.05], [0.0, 0.2]))

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["status"] for r in rows] == ["ok"] * 4
    vals = [float(r["val_top1"]) for r in rows]
    assert vals == sorted(vals, reverse=True)
    for row in rows:  # the figure is the final model's accuracy on the validation split
        epochs = [json.loads(line) for line in open(out / row["trial"] / "metrics.jsonl") if '"epoch"' in line]
        assert float(row["val_top1"]) == pytest.approx(epochs[-1]["val_top1"])
        summary = json.loads((out / row["trial"] / "summary.json").read_text())
        assert float(row["test_top1"]) == pytest.approx(summary["test"]["top1"])
    md = (out / "results.md").read_text()
    assert [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| trial-")] == [r["trial"] for r in rows]
    assert "val top-1" in printed and all(t in printed for t in trials)

    best = read_toml(out / "best_recipe.toml")
    assert (best["phases"]["extract"]["lr"], best["train"]["label_smoothing"]) == (
        float(rows[0]["phases.extract.lr"]), float(rows[0]["train.label_smoothing"]))
    assert main(["validate", str(out / "best_recipe.toml")]) == 0
    assert load_recipe(out / "best_recipe.toml").to_dict() == load_recipe(out / rows[0]["trial"] / "recipe.toml").to_dict()


@pytest.mark.parametrize("averaging", [
    None,
    pytest.param({"name": "averaging/ema", "decay": 0.5},
                 marks=needs_plugin_component("averager", "averaging/ema", "transferkit-averaging")),
])
def test_the_val_figure_is_the_exported_models_accuracy_on_the_val_split(fast_recipe, tmp_path, averaging):
    if averaging:  # the exported model is the averaged one: the sweep evaluates it on the val split
        fast_recipe["averaging"] = averaging
    outcome = sweep(fast_recipe, grid={"phases.extract.lr": [0.02]}, output=tmp_path / "s", log=lambda _m: None)
    trial = tmp_path / "s" / "trial-000"
    val = build_splits(load_recipe(trial / "recipe.toml")).val
    probs = transferkit.load(trial).predict_proba([val.load(i) for i in range(len(val))])
    accuracy = float((probs.argmax(1) == np.asarray(val.targets)).mean())
    assert outcome.best.val == pytest.approx(accuracy, abs=1.01 / len(val))  # decode-cache resize may move one image


def test_random_search_draws_from_the_given_ranges_reproducibly(fast_recipe, tmp_path):
    space = ["phases.extract.lr=loguniform:0.001:0.1", "data.batch_size=int:4:6", "train.label_smoothing=uniform:0.05:0.15",
             "train.optimizer=choice:adamw,sgd"]
    plan = plan_sweep(fast_recipe, random=space, trials=40, seed=3, output=tmp_path / "s")
    assert not (tmp_path / "s").exists()  # planning writes nothing
    assert len(plan.trials) == 40
    lrs = np.array([t["phases.extract.lr"] for t in plan.trials])
    assert lrs.min() >= 0.001 and lrs.max() <= 0.1 and (np.log10(lrs) < -2).sum() > 8  # log-uniform: half below 0.01
    assert {t["data.batch_size"] for t in plan.trials} == {4, 5, 6}  # both ends included
    assert all(isinstance(t["data.batch_size"], int) for t in plan.trials)
    assert all(0.05 <= t["train.label_smoothing"] <= 0.15 for t in plan.trials)
    assert {t["train.optimizer"] for t in plan.trials} == {"adamw", "sgd"}
    assert plan_sweep(fast_recipe, random=space, trials=40, seed=3).trials == plan.trials
    assert plan_sweep(fast_recipe, random=space, trials=40, seed=4).trials != plan.trials


def test_a_random_sweep_puts_the_drawn_values_in_each_trials_recipe(fast_recipe, tmp_path):
    path = write_recipe(tmp_path / "tiny.toml", fast_recipe)
    assert main(["sweep", str(path), "--random", "phases.extract.lr=loguniform:0.005:0.05", "--trials", "2", "--seed", "7",
                 "--output", str(tmp_path / "s")]) == 0
    plan = plan_sweep(str(path), random=["phases.extract.lr=loguniform:0.005:0.05"], trials=2, seed=7)
    for i, params in enumerate(plan.trials):
        assert read_toml(tmp_path / "s" / f"trial-{i:03d}" / "recipe.toml")["phases"]["extract"]["lr"] == params["phases.extract.lr"]


@pytest.mark.parametrize("option, named", [
    (["--grid", "phases.extract.lrr=0.01,0.02"], "phases.extract.lrr: unknown key"),
    (["--grid", "phases.extract.lr=0.01,-1"], "phases.extract.lr: Input should be greater than 0 (got -1)"),
    (["--random", "phases.extract.lr=loguniform:0:1", "--trials", "2"], "loguniform needs 0 < LOW < HIGH"),
    (["--random", "phases.extract.lr=gauss:0:1", "--trials", "2"], "unknown distribution 'gauss'"),
    (["--random", "phases.extract.lr=uniform:0.1:0.2"], "add --trials N"),
    (["--grid", "data.val_fraction=0.0"], "ranking them on the test split would pick the trial that fits the test set"),
])
def test_a_bad_sweep_is_refused_before_any_trial_runs(fast_recipe, tmp_path, capsys, option, named):
    path = write_recipe(tmp_path / "tiny.toml", fast_recipe)
    assert main(["sweep", str(path), *option, "--output", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and err.count("\n") == 0, err
    assert not (tmp_path / "s").exists()


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(fast_recipe, poison_plugin, tmp_path, capsys):
    fast_recipe["backbone"]["name"] = "tiny/poison"
    path = write_recipe(tmp_path / "tiny.toml", fast_recipe)
    out = tmp_path / "s"
    assert main(["sweep", str(path), "--grid", "backbone.params.poison=true,false", "--output", str(out)]) == 0
    results = {r.trial: r for r in read_results(out)}
    assert results["trial-000"].status == "failed" and "the loss is nan" in results["trial-000"].reason
    assert results["trial-001"].status == "ok" and results["trial-001"].val is not None
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["trial"] for r in rows] == ["trial-001", "trial-000"]  # failed trials last
    assert read_toml(out / "best_recipe.toml")["backbone"]["params"] == {"poison": False}
    assert "trial-000: failed: " in capsys.readouterr().out


def test_resume_keeps_finished_trials_and_runs_the_rest(fast_recipe, tmp_path, capsys):
    path = write_recipe(tmp_path / "tiny.toml", fast_recipe)
    out = tmp_path / "s"
    assert main(["sweep", str(path), "--grid", "phases.extract.lr=0.01,0.03", "--output", str(out)]) == 0
    first = {r.trial: r for r in read_results(out)}
    kept_model = (out / "trial-000" / "model.safetensors").stat().st_mtime_ns
    # as if killed during trial-001, after trial-000 finished but before its row was written
    (out / "results.json").write_text("[]")
    shutil.rmtree(out / "trial-001")
    (out / "trial-001").mkdir()
    assert main(["sweep", "--resume", str(out)]) == 0
    assert (out / "trial-000" / "model.safetensors").stat().st_mtime_ns == kept_model  # not trained again
    again = {r.trial: r for r in read_results(out)}
    assert set(again) == {"trial-000", "trial-001"}
    assert again["trial-000"].val == first["trial-000"].val
    assert again["trial-001"].val == pytest.approx(first["trial-001"].val)  # same seed, same result
    assert main(["sweep", str(path), "--grid", "phases.extract.lr=0.01", "--output", str(out)]) == 1  # holds a sweep
    assert "--resume" in capsys.readouterr().err


def test_a_tie_for_the_best_trial_is_said_in_one_line(fast_recipe, tmp_path, capsys):
    """phases.extract.lr does not change the probe: both trials score the same, and the sweep says
    which one it took and why."""
    path = write_recipe(tmp_path / "tiny.toml", fast_recipe)
    assert main(["sweep", str(path), "--grid", "phases.extract.lr=0.01,0.02", "--output", str(tmp_path / "sweep")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tie: ")]
    assert len(lines) == 1 and "2 trials share the best val top-1" in lines[0]
    assert "(trial-000, trial-001); trial-000, the first in trial order, is taken" in lines[0]


def test_no_tie_line_when_one_trial_is_best():
    from transferkit.workbench.sweep.results import TrialResult, tie_note

    results = [TrialResult("trial-000", {}, "ok", 0.9), TrialResult("trial-001", {}, "ok", 0.8),
               TrialResult("trial-002", {}, "failed", None, reason="nan")]
    assert tie_note(results) is None
    assert "trial-000, trial-002" in tie_note([*results[:2], TrialResult("trial-002", {}, "ok", 0.9)])
