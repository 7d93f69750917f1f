"""Clean stops: SIGTERM ends a run like SIGINT, saving a resumable checkpoint at the step it was in
and saying where; a stop before the first checkpoint offers no --resume and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file

from transferkit.cli import main
from transferkit.engine.rundir.checkpoint_io import load_checkpoint
from transferkit.testing import TinyCNN, registered_backbone, write_recipe

SIGNALLING_PLUGIN = """
import os
import signal

import torch
from torch import nn
from transferkit import hookimpl

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = 8
        self.data_config = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "input_size": (3, 32, 32)}
        self.calls = 0

    def forward(self, x):
        if torch.is_grad_enabled() and os.environ.get("SIGTERM_AT"):
            self.calls += 1
            if self.calls == int(os.environ["SIGTERM_AT"]):
                os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` or a scheduler's timeout would
        return self.body(x)

@hookimpl
def register_backbones(register):
    register("signal/tiny", lambda pretrained=False: Tiny())
"""


def _plugin(root: Path) -> Path:
    dist = root / "signaltiny-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: signaltiny\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[transferkit]\nsignaltiny = signaltiny_plugin\n")
    (root / "signaltiny_plugin.py").write_text(textwrap.dedent(SIGNALLING_PLUGIN))
    return root


def test_sigterm_saves_a_resumable_checkpoint_at_the_step_and_says_where(tiny_recipe, tmp_path):
    tiny_recipe["backbone"]["name"] = "signal/tiny"
    tiny_recipe["phases"] = {"extract": {"epochs": 2, "lr": 0.05, "cache_features": False, "solver": "sgd"},
                             "finetune": {"epochs": 1}}
    tiny_recipe["data"]["batch_size"] = 6  # 5 steps an epoch: the 8th training forward is epoch 2, step 3
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    env = {**os.environ, "PYTHONPATH": str(_plugin(tmp_path / "plugin")), "OMP_NUM_THREADS": "1"}

    def finetune(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "transferkit", "finetune", *args], env={**env, **extra},
                              capture_output=True, text=True, timeout=300)

    full = finetune(str(recipe), "--output", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    run = tmp_path / "cut"
    stopped = finetune(str(recipe), "--output", str(run), SIGTERM_AT="8")
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert stopped.stderr.strip() == (
        f"transferkit: stopped by SIGTERM; saved a checkpoint at phase extract, epoch 2, step 3"
        f" ({run / 'checkpoints' / 'last.pt'}): continue with transferkit finetune --resume {run}"
    )
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (state["phase"], state["epoch"], state["step"]) == ("extract", 1, 3)
    resumed = finetune("--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # as if it had never stopped


class InterruptsInTheFeatureCache(TinyCNN):
    """Sends SIGINT to its own process in its first frozen forward of a real batch (phase 1 caching
    features; the probes of the contract and of memory use batches of 1 and 2): the run directory
    exists, no checkpoint does."""

    def forward(self, x):
        if not torch.is_grad_enabled() and x.shape[0] > 2:
            os.kill(os.getpid(), signal.SIGINT)
        return super().forward(x)


def test_a_stop_before_the_first_checkpoint_offers_no_resume_and_leaves_nothing(tiny_recipe, tmp_path, capsys):
    with registered_backbone("tiny/interrupting", lambda pretrained=False: InterruptsInTheFeatureCache()):
        tiny_recipe["backbone"]["name"] = "tiny/interrupting"
        recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
        assert main(["finetune", str(recipe), "--output", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "transferkit: stopped by SIGINT before the first checkpoint; nothing to resume: start the run again"
    assert "--resume" not in err and not (tmp_path / "run").exists()
