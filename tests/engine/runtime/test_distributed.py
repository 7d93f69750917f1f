"""torchrun + DistributedDataParallel on the CPU (gloo, 2 processes): every image once per epoch,
rank 0 alone writes, and the accuracy matches a single process (this one) within a stated tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import transferkit
from transferkit.testing import registered, write_image_folder, write_recipe

from ...conftest import SUBPROCESS_PLUGIN, installed_tiny_plugin

pytestmark = pytest.mark.slow

TOLERANCE = 0.15  # absolute test accuracy: 2 ranks see batches twice as large, in another order


def _epochs(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]


def test_two_process_gloo_run_matches_one_process(tiny_recipe, tmp_path):
    root = write_image_folder(tmp_path / "more", {"train": 30, "test": 10})
    tiny_recipe["data"].update(root=str(root), batch_size=8, val_fraction=0.2)
    tiny_recipe["backbone"]["name"] = "subprocess/tiny"
    tiny_recipe["phases"] = {"extract": {"epochs": 3, "lr": 0.05, "solver": "sgd"}, "finetune": {"epochs": 2, "lr_ratio": 0.2}}
    tiny_recipe["train"].update(final="auto", calibrate="always")  # the whole end of a run, collective on 2 ranks
    recipe = write_recipe(tmp_path / "ddp.toml", tiny_recipe)
    env = {**os.environ, "PYTHONPATH": str(installed_tiny_plugin(tmp_path / "plugin")), "OMP_NUM_THREADS": "1", "TRANSFERKIT_OFFLINE": "1"}

    plugin = types.ModuleType("subprocesstiny_here")  # the same backbone, registered in this process
    exec(SUBPROCESS_PLUGIN, plugin.__dict__)
    with registered(plugin, "subprocesstiny"):
        transferkit.finetune(str(recipe), output=tmp_path / "one", quiet=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "transferkit", "finetune", str(recipe), "--output", str(tmp_path / "two")]
    double = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, double.stderr[-3000:]

    one, two = tmp_path / "one", tmp_path / "two"
    n_train = 72  # 90 train images, 20% held out for validation
    for record in _epochs(two):
        assert record["images"] == n_train and record["ranks"] == 2  # the union of both ranks: each image once
    assert [r["images"] for r in _epochs(one)] == [n_train] * 5
    assert double.stdout.count("summary (") == 1  # rank 0 alone reports and writes
    acc_one = json.loads((one / "summary.json").read_text())["test"]["top1"]
    acc_two = json.loads((two / "summary.json").read_text())["test"]["top1"]
    assert abs(acc_one - acc_two) <= TOLERANCE, (acc_one, acc_two)
    assert (two / "model.safetensors").is_file() and (two / "checkpoints" / "last.pt").is_file()


# a finished rank whose collectives' tensors are alive at exit (as a run's model is)
LEAVING = """
import torch
import torch.distributed as dist
from transferkit.engine.runtime.distributed import init_distributed

ctx = init_distributed("cpu")
kept = torch.ones(1000)
for _ in range(20):
    dist.all_reduce(kept)
ctx.barrier()
ctx.leave_at_exit()
"""


def test_finished_ranks_leave_the_process_group_at_exit(tmp_path):
    """Left to the interpreter's teardown, gloo aborts most such processes ("terminate called without
    an active exception", exit -6: 6 launches of 8 without ``leave_at_exit``), and torchrun calls the
    run failed; with it, both launches end well."""
    script = tmp_path / "leaving.py"
    script.write_text(LEAVING)
    env = {**os.environ, "PYTHONPATH": str(Path(transferkit.__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
