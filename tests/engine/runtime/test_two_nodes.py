"""``torchrun --nnodes 2`` on one machine: two "nodes" (one torchrun each, one process per node,
c10d rendezvous on 127.0.0.1, gloo). They end with the weights of one process at the same global
batch, rank 0 alone writes the run, and after one node is killed mid-run (its torchrun and its
worker, as when a machine dies) the other exits instead of hanging, and ``--resume`` on both nodes
ends with the weights of an uninterrupted two-node run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path

import pytest
from safetensors.torch import load_file

import transferkit
from transferkit.errors import TransferkitError
from transferkit.testing import registered, write_image_folder, write_recipe

from ...conftest import SUBPROCESS_PLUGIN, installed_tiny_plugin

pytestmark = pytest.mark.slow

# One process at data.batch_size 16 against two at 8: the same 3 batches of 16 per epoch (48 training
# images, so shards and batches split evenly), the same mean loss; DDP averages the two ranks'
# gradients, so only float summation order differs. Measured: at most 1.8e-7 (weights of order 0.03
# to 1; fine-tuning's 6 steps move them by up to 0.035); 1e-5 leaves room for other CPUs' kernels.
ONE_VS_TWO_NODES = 1e-5
# --resume is exact (a product promise): the same batches, the same RNG, the same summation order,
# so the resumed run's weights are bit for bit the uninterrupted run's. Measured: 0.0.
RESUMED = 0.0
NODE_EXIT_SECONDS = 60  # how long the surviving node may take to notice its peer died and exit
RUN_SECONDS = 300  # any one launch (a node that hangs fails the test; it is killed in `finally`)

# the test's backbone, slowed while it trains when TINY_STEP_SECONDS is set: the run that is killed
# sleeps through its fine-tuning steps, so the kill lands after its first checkpoint and before its end
SLOWED_PLUGIN = SUBPROCESS_PLUGIN + """
import os, time
_forward = Tiny.forward

def _slowed(self, x):
    if torch.is_grad_enabled():
        time.sleep(float(os.environ.get("TINY_STEP_SECONDS", "0")))
    return _forward(self, x)

Tiny.forward = _slowed
"""


def test_two_nodes_match_one_process_write_once_and_resume_after_losing_a_node(tiny_recipe, tmp_path):
    root = write_image_folder(tmp_path / "data", {"train": 16, "val": 4, "test": 4})  # 48 train images, 3 classes
    tiny_recipe["data"].update(root=str(root), batch_size=8, val_fraction=0.0)  # per process: 2 x 8 = 16 a step
    tiny_recipe["backbone"]["name"] = "subprocess/tiny"  # no dropout, mixup or class weights: nothing differs by rank
    tiny_recipe["phases"] = {"extract": {"epochs": 2, "lr": 0.05, "solver": "sgd"}, "finetune": {"epochs": 2, "lr_ratio": 0.2}}
    tiny_recipe["train"]["checkpoint_every_steps"] = 1  # so the kill can land in the middle of an epoch
    recipe = write_recipe(tmp_path / "two.toml", tiny_recipe)
    one_recipe = write_recipe(tmp_path / "one.toml", {**tiny_recipe, "data": {**tiny_recipe["data"], "batch_size": 16}})
    env = _env(tmp_path)

    plugin = types.ModuleType("subprocesstiny_here")  # the same backbone, registered in this process
    exec(SUBPROCESS_PLUGIN, plugin.__dict__)
    with registered(plugin, "subprocesstiny"):
        transferkit.finetune(str(one_recipe), output=tmp_path / "one", quiet=True)

    # a. two nodes, the same global batch: one process's weights
    two = tmp_path / "two"
    logs = _run_nodes([str(recipe), "--output", str(two)], env, tmp_path / "two-node")
    assert _max_difference(tmp_path / "one", two) <= ONE_VS_TWO_NODES

    # b. written once: one summary across both nodes, the one process's files, each record once
    assert sum(log.count("summary (") for log in logs) == 1
    assert sum(log.count("run directory:") for log in logs) == 1
    assert _files(two) == _files(tmp_path / "one")
    _assert_written_once(two)

    # c. a node killed after the first checkpoint (the one rank 0 is not on: c10d orders the nodes
    # itself): the other exits; both resumed: the uninterrupted run's weights
    cut = tmp_path / "cut"
    nodes = _start_nodes([str(recipe), "--output", str(cut)], {**env, "TINY_STEP_SECONDS": "1"}, tmp_path / "cut")
    try:
        _wait_for(lambda: (cut / "checkpoints" / "last.pt").is_file(), nodes, "the first checkpoint")
        main_node = _wait_for(lambda: _node_of_rank_0(nodes), nodes, "rank 0's first line")
        other = nodes[1 - main_node]
        _kill_node(other[0])
        try:
            code = nodes[main_node][0].wait(timeout=NODE_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"node {main_node} still runs {NODE_EXIT_SECONDS} s after the other node was killed")
        assert code != 0
    finally:
        for proc, _log in nodes:
            _kill_node(proc)
    assert not (cut / "summary.json").exists(), "the run ended before the kill; nothing was resumed"
    with registered(plugin, "subprocesstiny"), pytest.raises(TransferkitError, match="trained as 2 process"):
        transferkit.finetune(resume=cut, quiet=True)  # the surviving node alone would see other batches
    logs = _run_nodes(["--resume", str(cut)], env, tmp_path / "resumed")
    resumed_at = [line for log in logs for line in log.splitlines() if line.startswith("resuming ")]
    assert len(resumed_at) == 1, logs
    assert _max_difference(two, cut) <= RESUMED, resumed_at
    assert _files(cut) == _files(two)
    _assert_written_once(cut)  # (the records after the checkpoint, written before the kill, are not doubled)


# -- the nodes ----------------------------------------------------------------------------------
def _env(tmp_path: Path) -> dict[str, str]:
    """This checkout of transferkit (not whichever one the environment installed) and the slowed
    test backbone, one thread a process, output unbuffered (the test reads it while a node runs)."""
    here = str(Path(transferkit.__file__).resolve().parents[1])
    plugin = installed_tiny_plugin(tmp_path / "plugin", SLOWED_PLUGIN)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), here]), "OMP_NUM_THREADS": "1",
            "TRANSFERKIT_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_nodes(args: list[str], env: dict[str, str], logs: Path) -> list[tuple[subprocess.Popen, Path]]:
    """Two torchrun launches, as on two machines: the same rendezvous endpoint and id, one process
    each; each in its own process group, its output in ``logs``-N.txt."""
    rendezvous = ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{_free_port()}", "--rdzv_id", uuid.uuid4().hex]
    nodes = []
    for node in range(2):
        log = logs.with_name(f"{logs.name}-{node}.txt")
        with log.open("w") as out:
            command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1", *rendezvous,
                       "-m", "transferkit", "finetune", *args]
            nodes.append((subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True), log))
    return nodes


def _run_nodes(args: list[str], env: dict[str, str], logs: Path) -> list[str]:
    """Both nodes to their end (both must succeed); their output."""
    nodes = _start_nodes(args, env, logs)
    try:
        deadline = time.monotonic() + RUN_SECONDS
        codes = [proc.wait(timeout=max(1.0, deadline - time.monotonic())) for proc, _log in nodes]
    finally:
        for proc, _log in nodes:
            _kill_node(proc)
    texts = [log.read_text() for _proc, log in nodes]
    assert codes == [0, 0], "\n".join(text[-3000:] for text in texts)
    return texts


def _node_of_rank_0(nodes: list[tuple[subprocess.Popen, Path]]) -> int | None:
    """Which launch the rendezvous made rank 0 (it alone prints; c10d ranks nodes by arrival)."""
    found = [i for i, (_proc, log) in enumerate(nodes) if "run directory:" in log.read_text()]
    return found[0] if found else None


def _wait_for(condition, nodes: list[tuple[subprocess.Popen, Path]], what: str):
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value is not None and value is not False:  # (node 0 is a found node)
            return value
        if any(proc.poll() is not None for proc, _log in nodes):
            pytest.fail(f"a node ended before {what}:\n" + "\n".join(log.read_text()[-3000:] for _proc, log in nodes))
        time.sleep(0.05)
    pytest.fail(f"no {what} after {RUN_SECONDS} s")


def _kill_node(proc: subprocess.Popen) -> None:
    """SIGKILL a node as a machine dies: torchrun's process group and its workers' (torchrun starts
    each worker in a session of its own, so killing torchrun's group alone would leave them)."""
    if proc.poll() is None:
        workers = _descendants(proc.pid)
        for pid in [proc.pid, *workers]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.wait(timeout=30)


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux: from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


# -- the runs -----------------------------------------------------------------------------------
def _max_difference(a: Path, b: Path) -> float:
    """The largest absolute difference between two runs' final weights, over every tensor."""
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert x.keys() == y.keys()
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x if x[k].numel())


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and p.name != ".lock")


def _assert_written_once(run: Path) -> None:
    """Each metrics record once (2 + 2 epochs, a test record a phase), no temp file left, no
    checksum record left half-written (``pending``)."""
    kinds = sorted(json.loads(line)["kind"] for line in (run / "metrics.jsonl").read_text().splitlines())
    assert kinds == ["epoch"] * 4 + ["test"] * 2, kinds
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    for folder in (run, run / "checkpoints"):
        assert json.loads((folder / "checksums.json").read_text())["pending"] == {}
