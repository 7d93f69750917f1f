"""Fault injection: SIGKILL a small CPU run at 20 random moments, resuming after each; the final
weights equal an uninterrupted run's, and every checkpoint left behind loads."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
import torch
from safetensors.torch import load_file

from transferkit.engine.checkpoint import load_checkpoint
from transferkit.testing import write_recipe

from ..conftest import installed_tiny_plugin

pytestmark = pytest.mark.slow

def _command(recipe: Path, run: Path) -> list[str]:
    if (run / "checkpoints" / "last.pt").exists():
        return [sys.executable, "-m", "transferkit", "finetune", "--resume", str(run)]
    return [sys.executable, "-m", "transferkit", "finetune", str(recipe), "--output", str(run)]


def _readable(run: Path) -> None:
    """Whatever a kill left behind must load."""
    if (run / "checkpoints" / "last.pt").exists():
        state = load_checkpoint(run / "checkpoints" / "last.pt")
        assert {"model", "optimizer", "phase", "epoch", "step", "rng"} <= set(state)
    if (run / "recipe.toml").exists():
        tomllib.loads((run / "recipe.toml").read_text())
    if (run / "summary.json").exists():
        json.loads((run / "summary.json").read_text())


def test_sigkill_at_20_random_moments_then_resume_gives_identical_weights(tiny_recipe, tmp_path):
    tiny_recipe["backbone"]["name"] = "subprocess/tiny"
    tiny_recipe["phases"] = {"extract": {"epochs": 3, "lr": 0.05, "cache_features": False}, "finetune": {"epochs": 3}}
    tiny_recipe["data"]["batch_size"] = 4
    tiny_recipe["train"]["checkpoint_every_steps"] = 1
    recipe = write_recipe(tmp_path / "fault.toml", tiny_recipe)
    env = {**os.environ, "PYTHONPATH": str(installed_tiny_plugin(tmp_path / "plugin")), "OMP_NUM_THREADS": "1", "TRANSFERKIT_OFFLINE": "1"}

    started = time.perf_counter()
    subprocess.run(_command(recipe, tmp_path / "full"), env=env, check=True, capture_output=True, timeout=300)
    full_seconds = time.perf_counter() - started

    run, rng, kills = tmp_path / "cut", random.Random(20261123), 0
    while kills < 20:
        proc = subprocess.Popen(_command(recipe, run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        delay = rng.uniform(0.3, full_seconds)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
        _readable(run)
    final = subprocess.run(_command(recipe, run), env=env, capture_output=True, timeout=300)
    assert final.returncode == 0, final.stderr.decode()[-2000:]

    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
