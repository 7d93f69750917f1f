"""Reliability: non-finite losses stop cleanly, a run directory is locked, checkpoints are atomic."""

from __future__ import annotations

import os

import pytest
import torch

from transferkit.cli import main
from transferkit.engine.rundir.checkpoint_io import atomic_write, load_checkpoint
from transferkit.engine.rundir.run_dir import RunDir
from transferkit.errors import TransferkitError
from transferkit.testing import TinyCNN, registered_backbone, write_recipe


class NaNAfter(TinyCNN):
    """Returns NaN features from the 6th training forward pass on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        out = super().forward(x)
        if self.training or torch.is_grad_enabled():
            self.calls += 1
            if self.calls > 5:
                return out * float("nan")
        return out


@pytest.fixture
def nan_plugin():
    with registered_backbone("tiny/nan", lambda pretrained=False: NaNAfter(), "nan-plugin"):
        yield


def test_non_finite_loss_stops_naming_phase_epoch_step_and_keeps_the_last_good_checkpoint(tiny_recipe, nan_plugin, tmp_path, capsys):
    tiny_recipe["backbone"]["name"] = "tiny/nan"
    tiny_recipe["phases"]["extract"]["cache_features"] = False
    tiny_recipe["train"]["checkpoint_every_steps"] = 1
    tiny_recipe["data"]["batch_size"] = 6  # 5 steps an epoch: the 6th forward is epoch 2, step 1
    path = write_recipe(tmp_path / "nan.toml", tiny_recipe)
    assert main(["finetune", str(path), "--output", str(tmp_path / "run")]) == 4
    err = capsys.readouterr().err.strip()
    assert "phase extract, epoch 2/2, step 1: the loss is nan" in err and err.count("\n") == 0
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (state["phase"], state["epoch"], state["step"]) == ("extract", 1, 0)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_second_run_into_a_locked_directory_is_refused(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock():
        with pytest.raises(TransferkitError, match=rf"another transferkit run \(pid {os.getpid()}\) is using this directory"):
            with RunDir(tmp_path / "run").lock():
                pass
    with RunDir(tmp_path / "run").lock():  # released when the first run ends
        pass


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")

    def fail(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_resume_with_a_different_recipe_is_refused(tiny_recipe, tmp_path, capsys):
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["finetune", str(path), "--output", str(tmp_path / "run")]) == 0
    assert main(["finetune", str(path), "--resume", str(tmp_path / "run"), "--set", "phases.extract.lr=0.5"]) == 1
    assert "the recipe differs from the run's at phases.extract.lr" in capsys.readouterr().err
    assert main(["finetune", "--resume", str(tmp_path / "run")]) == 0  # the run's own recipe


def test_pickled_run_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"model": Evil()}, tmp_path / "last.pt")
    with pytest.raises(TransferkitError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "last.pt")
