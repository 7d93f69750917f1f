"""Fault injection: SIGKILL small CPU runs at 20 random moments, resuming each until it finishes;
every run ends with the weights of an uninterrupted run, and every checkpoint left behind loads.

The uninterrupted run and the last resume are fresh ``python -m transferkit`` processes. The runs
that are killed are processes too, but forked from one that has imported transferkit and torch
(and computed nothing): ``python -m transferkit`` spends most of its life importing, so the 20
moments land in the runs (their setup, steps, checkpoint writes and ends) rather than in the
imports, and the test does not start dozens of interpreters. That a forked run is a fresh
process's run is checked first: its weights equal the fresh process's. A run that finishes is
compared and the next one starts in a new folder, so no kill lands in a resume with nothing left
to do."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
import torch
from safetensors.torch import load_file

from transferkit.engine.rundir.checkpoint_io import load_checkpoint
from transferkit.testing import write_recipe

from ..conftest import installed_tiny_plugin

pytestmark = pytest.mark.slow

# Imports what a run imports (torch's dynamo with the optimizers, the plots' matplotlib), then forks
# a child per line on stdin: ``[argv, log file]``; writes the child's pid, then its exit code
# (negative: the signal that ended it). The child runs the command line's main() with its output
# in the log file, as ``python -m transferkit ARGV`` would.
FORK_SERVER = r"""
import json, os, sys, traceback
import torch, torch._dynamo, torchvision, PIL.Image, matplotlib.pyplot  # noqa: F401
import transferkit.cli, transferkit.engine.run  # noqa: F401
print("ready", flush=True)
for line in sys.stdin:
    argv, log = json.loads(line)
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            code = transferkit.cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class Forks:
    """The fork server: ``start`` a run, ``wait`` for its exit code up to a timeout."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FORK_SERVER], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.logs, self.count, self.pending = logs, 0, b""
        logs.mkdir()
        assert self._line(timeout=300) == "ready"

    def _line(self, timeout: float | None) -> str | None:
        """The next line the server writes, or None after ``timeout`` seconds (unbuffered: a
        line already read is never waited for)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            assert chunk, "the fork server ended"
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()

    def start(self, argv: list[str]) -> tuple[int, Path]:
        self.count += 1
        log = self.logs / f"{self.count}.log"
        self.proc.stdin.write((json.dumps([argv, str(log)]) + "\n").encode())
        self.proc.stdin.flush()
        return int(self._line(timeout=60)), log

    def wait(self, timeout: float | None = None) -> int | None:
        line = self._line(timeout)
        return None if line is None else int(line)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _argv(recipe: Path, run: Path) -> list[str]:
    if (run / "checkpoints" / "last.pt").exists():
        return ["finetune", "--resume", str(run)]
    return ["finetune", str(recipe), "--output", str(run)]


def _readable(run: Path) -> None:
    """Whatever a kill left behind must load."""
    if (run / "checkpoints" / "last.pt").exists():
        state = load_checkpoint(run / "checkpoints" / "last.pt")
        assert {"model", "optimizer", "phase", "epoch", "step", "rng"} <= set(state)
    if (run / "recipe.toml").exists():
        tomllib.loads((run / "recipe.toml").read_text())
    if (run / "summary.json").exists():
        json.loads((run / "summary.json").read_text())


def _same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_sigkill_at_20_random_moments_then_resume_gives_identical_weights(tiny_recipe, tmp_path):
    tiny_recipe["backbone"]["name"] = "subprocess/tiny"
    tiny_recipe["phases"] = {"extract": {"epochs": 3, "lr": 0.05, "cache_features": False}, "finetune": {"epochs": 3}}
    tiny_recipe["data"]["batch_size"] = 4
    # the whole of a run's end, for the kills to land in: the final choice and the calibration
    tiny_recipe["train"].update(checkpoint_every_steps=1, final="auto", calibrate="always")
    recipe = write_recipe(tmp_path / "fault.toml", tiny_recipe)
    env = {**os.environ, "PYTHONPATH": str(installed_tiny_plugin(tmp_path / "plugin")), "OMP_NUM_THREADS": "1", "TRANSFERKIT_OFFLINE": "1"}
    command = [sys.executable, "-m", "transferkit"]
    subprocess.run(command + _argv(recipe, tmp_path / "full"), env=env, check=True, capture_output=True, timeout=300)

    forks = Forks(env, tmp_path / "logs")
    try:
        started = time.perf_counter()
        forks.start(_argv(recipe, tmp_path / "forked"))
        assert forks.wait() == 0
        full_seconds = time.perf_counter() - started
        assert _same_weights(tmp_path / "full", tmp_path / "forked"), "a forked run differs from a fresh process's"

        rng, kills, finished, run = random.Random(20261123), 0, 0, tmp_path / "cut-1"
        while kills < 20:
            pid, log = forks.start(_argv(recipe, run))
            code = forks.wait(timeout=rng.uniform(0.3, full_seconds))
            if code is None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # it ended in the meantime
                    pass
                code = forks.wait()
            _readable(run)
            if code == -signal.SIGKILL:
                kills += 1
            else:
                assert code == 0, log.read_text()[-2000:]
                assert _same_weights(tmp_path / "full", run), f"{run.name} differs from the uninterrupted run"
                finished += 1
                assert finished <= 40, f"{finished} runs finished and only {kills} kills landed"
                run = tmp_path / f"cut-{finished + 1}"
    finally:
        forks.close()
    final = subprocess.run(command + _argv(recipe, run), env=env, capture_output=True, timeout=300)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    assert _same_weights(tmp_path / "full", run)
