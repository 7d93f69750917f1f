"""transferkit lr-find: exponentially spaced LRs, bias-corrected smoothing, the stop at 4x the best,
a suggestion inside the range and below the divergence, the plot and data written atomically,
the finetune phase's parameter groups scaled together, exit codes."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

import transferkit
import transferkit.engine.training.optim as optim
import transferkit.workbench.lr_find.plot_files as outputs
from transferkit.cli import main
from transferkit.testing import write_recipe
from transferkit.workbench.lr_find.range_test import exponential_lrs, range_test, suggest


def sigmoid_loss(centre: float, noise: float = 0.05, seed: int = 0):
    """A loss that is flat, falls around LR 10**centre, then blows up two decades later."""
    rng = np.random.default_rng(seed)

    def loss(lr: float) -> float:
        x = math.log10(lr)
        value = 0.5 + 2.0 / (1.0 + math.exp(2.5 * (x - centre)))
        if x > centre + 2.0:
            value += 50.0 * (x - centre - 2.0) ** 2
        return value + rng.normal(0.0, noise)

    return loss


def test_learning_rates_are_exponentially_spaced_from_start_to_end():
    lrs = exponential_lrs(1e-7, 10.0, 100)
    assert len(lrs) == 100 and lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    ratios = np.diff(np.log(lrs))
    assert np.allclose(ratios, ratios[0]) and ratios[0] == pytest.approx(math.log(1e8) / 99)


def test_smoothing_is_bias_corrected_and_the_test_stops_at_4x_the_best():
    trace = range_test(sigmoid_loss(-3.0), exponential_lrs(1e-7, 10.0, 100))
    assert trace.smoothed[0] == pytest.approx(trace.losses[0])  # no pull towards 0 at the start
    average = 0.0
    for i, loss in enumerate(trace.losses):
        average = 0.98 * average + 0.02 * loss
        assert trace.smoothed[i] == pytest.approx(average / (1 - 0.98 ** (i + 1)))
    assert trace.stopped and len(trace.lrs) < 100
    assert trace.smoothed[-1] > 4 * min(trace.smoothed[:-1])
    assert all(s <= 4 * min(trace.smoothed[: i + 1]) for i, s in enumerate(trace.smoothed[:-1]))


def test_a_nan_loss_stops_the_test():
    trace = range_test(lambda lr: float("nan") if lr > 1e-3 else 1.0, exponential_lrs(1e-6, 1.0, 30))
    assert trace.stopped and math.isnan(trace.losses[-1]) and trace.lrs[-1] > 1e-3 and trace.lrs[-2] <= 1e-3


@pytest.mark.parametrize("centre", [-4.0, -2.5, -1.5])
def test_the_suggestion_is_near_the_steepest_descent_and_below_the_divergence(centre):
    trace = range_test(sigmoid_loss(centre), exponential_lrs(1e-7, 10.0, 100))
    steepest, minimum, method = suggest(trace)
    assert method == "steepest descent"
    assert 10 ** (centre - 0.5) <= steepest <= 10 ** (centre + 0.5)  # within half a decade of the true one
    assert trace.lrs[0] <= steepest < minimum < trace.lrs[-1]


def test_a_flat_loss_that_then_rises_suggests_a_tenth_of_where_it_rises():
    """Finetuning from a trained head: the loss starts at its floor and only rises, from 1e-3 on."""
    rng = np.random.default_rng(0)

    def loss(lr: float) -> float:
        return 0.6 + 200.0 * max(0.0, lr - 1e-3) + rng.normal(0.0, 0.04)

    trace = range_test(loss, exponential_lrs(1e-7, 10.0, 100))
    suggestion, minimum, method = suggest(trace)
    assert method == "rise / 10"
    assert 1e-4 / 3 <= suggestion <= 1e-4 * 3
    assert suggestion < trace.lrs[-1]


def test_extract_phase_writes_plot_csv_and_json_in_a_run_folder(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = transferkit.lr_find(tiny_recipe, steps=60, log=None)
    folder = result.folder
    assert folder.resolve().parent == tmp_path / "runs" / "tiny" and folder.name.startswith("lr-find-")
    assert sorted(p.name for p in folder.iterdir()) == ["lr_find.csv", "lr_find.json", "lr_find.png"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging folder left
    with Image.open(folder / "lr_find.png") as image:
        assert image.format == "PNG" and image.size[0] > 400
    with open(folder / "lr_find.csv") as fh:
        rows = list(csv.DictReader(fh))
    lrs = [float(r["lr"]) for r in rows]
    assert len(rows) == len(result.trace.lrs) and int(rows[-1]["step"]) == len(rows)
    assert np.allclose(np.diff(np.log(lrs)), math.log(1e8) / 59)
    data = json.loads((folder / "lr_find.json").read_text())
    assert data["phase"] == "extract" and data["recipe_key"] == "phases.extract.lr"
    suggestion = data["suggestion"]["lr"]
    assert suggestion == result.suggestion and 1e-7 <= suggestion <= 10.0
    assert suggestion < data["suggestion"]["minimum_lr"]
    if data["stopped_early"]:
        assert suggestion < data["end_reached"] == result.diverged_at
    assert [p["lr"] for p in data["points"]] == pytest.approx(lrs)


def test_cli_finetune_phase_prints_the_recipe_key(tiny_recipe, tmp_path, capsys):
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    out_dir = tmp_path / "lrf"
    assert main(["lr-find", str(path), "--phase", "finetune", "--steps", "30", "--start", "1e-5", "--end", "1",
                 "--output", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "fitted the head first, as phase extract does (logistic" in out
    assert "lr-find (finetune): " in out and "suggested lr " in out
    line = next(line for line in out.splitlines() if line.startswith("set phases.finetune.lr_ratio = "))
    value = float(line.split("=")[1].split()[0])
    data = json.loads((out_dir / "lr_find.json").read_text())
    assert value == pytest.approx(data["suggestion"]["lr"] / 0.05, rel=0.05)
    assert (out_dir / "lr_find.png").stat().st_size > 1000


def test_the_finetune_advice_names_the_key_the_recipe_uses(tiny_recipe):
    from transferkit.recipe_loading import load_recipe
    from transferkit.workbench.lr_find.steps import _recipe_key

    assert _recipe_key(load_recipe(tiny_recipe), "finetune", 0.01) == ("phases.finetune.lr_ratio", pytest.approx(0.2))
    assert _recipe_key(load_recipe(tiny_recipe, {"phases.finetune.lr": 1e-3}), "finetune", 0.01) == ("phases.finetune.lr", 0.01)


def test_finetune_scales_every_parameter_group_together(tiny_recipe, monkeypatch):
    made = []
    original = optim.build_optimizer

    def with_ratio(model, lr, cfg, **kwargs):
        optimizer = original(model, lr, cfg, **kwargs)
        optimizer.param_groups[0]["lr"] = lr * 0.5  # a group that trains at half the base LR
        made.append(optimizer)
        return optimizer

    monkeypatch.setattr(optim, "build_optimizer", with_ratio)
    result = transferkit.lr_find(tiny_recipe, phase="finetune", steps=10, start=1e-5, end=1e-3, write=False, log=None)
    groups = made[-1].param_groups
    assert len(groups) == 2 and result.folder is None
    assert groups[1]["lr"] == pytest.approx(result.trace.lrs[-1])
    assert groups[0]["lr"] == pytest.approx(0.5 * result.trace.lrs[-1])


def test_a_crash_while_writing_leaves_no_folder(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = []

    def failing(path, write):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(path, write)

    original = outputs.atomic_write
    monkeypatch.setattr(outputs, "atomic_write", failing)
    with pytest.raises(OSError):
        transferkit.lr_find(tiny_recipe, steps=10, log=None)
    assert list((tmp_path / "runs" / "tiny").iterdir()) == []


def test_bad_options_are_one_line_errors_with_exit_code_2(tiny_recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["lr-find", str(path), "--start", "1", "--end", "0.1"]) == 2
    assert "--start 1 --end 0.1: need 0 < start < end" in capsys.readouterr().err
    assert main(["lr-find", str(path), "--steps", "2"]) == 2
    assert "--steps 2: a range test needs at least 5 steps" in capsys.readouterr().err
    assert main(["lr-find", str(tmp_path / "nope.toml")]) == 2
    assert not (tmp_path / "runs").exists()


def test_extract_with_the_probe_says_the_lr_is_unused_and_points_to_the_finetune_lr(tiny_recipe, tmp_path, capsys):
    """Phase 1 as the logistic probe (the default) ignores phases.extract.lr: no "set" advice for it."""
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    args = ["lr-find", str(path), "--steps", "20", "--start", "1e-4", "--end", "1"]
    assert main([*args, "--output", str(tmp_path / "probe")]) == 0
    out = capsys.readouterr().out
    assert not any(line.startswith("set phases.extract.lr") for line in out.splitlines())
    assert "this recipe's phase 1 is the logistic probe (L-BFGS), which does not use it" in out
    assert "transferkit lr-find RECIPE --phase finetune" in out
    assert json.loads((tmp_path / "probe" / "lr_find.json").read_text())["advice"].startswith("not set: ")
    assert main([*args, "--output", str(tmp_path / "sgd"), "--set", "phases.extract.solver=sgd"]) == 0
    assert any(line.startswith("set phases.extract.lr = ") for line in capsys.readouterr().out.splitlines())


def test_the_plots_smoothed_curve_is_centred_and_does_not_lag(tiny_recipe, monkeypatch):
    from transferkit.recipe_loading import load_recipe
    from transferkit.workbench.lr_find.range_test import LRFindResult, level

    lrs = exponential_lrs(1e-6, 1.0, 100)
    trace = range_test(lambda lr: 2.0 if lr < 1e-3 else 0.5, lrs, divergence=1e9)  # a step down at 1e-3
    result = LRFindResult("extract", trace, 1e-3, 1e-2, "steepest descent", "phases.extract.lr", 1e-3)
    axes = []
    original = outputs.plt.subplots

    def keep(*args, **kwargs):
        fig, ax = original(*args, **kwargs)
        axes.append(ax)
        return fig, ax

    monkeypatch.setattr(outputs.plt, "subplots", keep)
    outputs.plot_png(result, load_recipe(tiny_recipe))
    smoothed = next(line for line in axes[0].get_lines() if line.get_label().startswith("smoothed loss"))
    assert np.allclose(smoothed.get_ydata(), level(trace))
    halfway = lrs[int(np.argmax(np.asarray(smoothed.get_ydata()) < 1.25))]  # where it is half-way down
    assert 1e-3 / 2 <= halfway <= 1e-3 * 2  # at the step, where the EMA is still far above
    assert np.asarray(trace.smoothed)[int(np.searchsorted(lrs, 2e-3))] > 1.5
