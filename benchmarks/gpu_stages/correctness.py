"""Stage 1: correctness on CUDA. recipes/flowers.toml end to end on flowers12 at 224 px (the
engine's runtime: bf16 autocast + channels_last on CUDA), its test accuracy beside a CPU run's;
one epoch under fp16 + GradScaler; a SIGKILL mid-phase then ``--resume``, compared with the
uninterrupted run; ``evaluate`` and ``export --format onnx`` of the finished run."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from transferkit.engine.rundir.checkpoint_io import load_checkpoint
from transferkit.engine.rundir.run_dir import RunDir

from .common import ROOT, Settings, cli_command, finetune_argv, flowers_root, fresh_dir, read_summary, run_cli

KILL_AT = 0.6  # of the first finetune epoch's duration after its record: past a mid-epoch checkpoint
# keys that may differ between the CPU reference and the GPU run (where the data lies, the device)
REFERENCE_FREE_KEYS = ("data.root", "train.device")


def flowers_overrides(settings: Settings, root: Path) -> dict[str, str]:
    """The recipe's own settings at 224 px, with a mid-epoch checkpoint for the resume check. A dry
    run's toy folder has a validation split under 64 images, where ``train.folds = "auto"`` would
    cross-fit 5 folds; flowers12's (72 images) chooses on validation, so the dry run does too."""
    if settings.dry:
        return {"data.root": str(root), "data.image_size": "32", "data.batch_size": "4", "phases.extract.epochs": "1",
                "phases.finetune.epochs": "2", "train.checkpoint_every_steps": "2", "train.folds": "1"}
    return {"data.root": str(root), "data.image_size": "224", "train.checkpoint_every_steps": "5"}


def shown_overrides(settings: Settings, overrides: dict[str, str]) -> dict[str, str]:
    """The overrides as the summary shows them: the data as given on the command line."""
    return {**overrides, "data.root": "(generated toy images)" if settings.dry else settings.data}


def cpu_reference(settings: Settings, overrides: dict[str, str]) -> dict[str, Any]:
    """The CPU figure to compare with, from the file ``--make-cpu-reference`` wrote, or why none."""
    if not settings.cpu_reference:
        return {"status": "not measured (no --cpu-reference)"}
    path = Path(settings.cpu_reference or "")
    path = path if path.is_absolute() else ROOT / path
    if not path.is_file():
        return {"status": f"not measured ({settings.cpu_reference} does not exist; make it with"
                          " python benchmarks/gpu.py --make-cpu-reference on a CPU machine)"}
    ref = json.loads(path.read_text())
    ours = {k: v for k, v in overrides.items() if k not in REFERENCE_FREE_KEYS}
    theirs = {k: v for k, v in ref.get("overrides", {}).items() if k not in REFERENCE_FREE_KEYS}
    if ours != theirs:
        return {"status": f"not comparable: {path.name} ran with {theirs}, this run with {ours}"}
    return {"status": "ok", "file": path.name, **{k: ref[k] for k in ("test_top1", "test_n", "machine", "date") if k in ref}}


def flowers_run(settings: Settings, done: dict[str, Any]) -> dict[str, Any]:
    """The flowers recipe end to end on this machine's device (CUDA: bf16 + channels_last)."""
    overrides = flowers_overrides(settings, flowers_root(settings))
    run = fresh_dir(Path(settings.workdir) / "flowers")
    started = time.perf_counter()
    run_cli(finetune_argv(overrides, run))
    summary = read_summary(run)
    test = summary["test"]
    result = {"_run_dir": str(run), "overrides": shown_overrides(settings, overrides), "device": summary["device"], "wall_seconds": time.perf_counter() - started,
              "test_top1": test["top1"], "test_n": test["n"], "test_correct": round(test["top1"] * test["n"]),
              "phase_seconds": {name: info["seconds"] for name, info in summary["phases"].items()}}
    reference = cpu_reference(settings, overrides)
    result["cpu_reference"] = reference
    if reference["status"] == "ok":
        result["images_apart"] = abs(result["test_correct"] - round(reference["test_top1"] * reference["test_n"]))
    return result


def fp16_epoch(settings: Settings, done: dict[str, Any]) -> dict[str, Any]:
    """One cached extract epoch and one finetune epoch under fp16 autocast with the GradScaler."""
    overrides = {**flowers_overrides(settings, flowers_root(settings)), "train.amp": "fp16",
                 "phases.extract.epochs": "1", "phases.finetune.epochs": "1"}
    run = fresh_dir(Path(settings.workdir) / "flowers-fp16")
    run_cli(finetune_argv(overrides, run))
    summary = read_summary(run)
    epochs = [r for r in RunDir(run).read_metrics() if r.get("kind") == "epoch" and r["phase"] == "finetune"]
    scaler = load_checkpoint(run / "checkpoints" / "last.pt").get("scaler") or {}
    return {"device": summary["device"], "test_top1": summary["test"]["top1"], "train_loss": epochs[-1]["train_loss"],
            "images_per_second": epochs[-1]["images_per_second"],
            "loss_scale": float(scaler["scale"]) if "scale" in scaler else None}


def _wait_for_finetune_epoch(run: Path, proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = run / "metrics.jsonl"
        if metrics.is_file():
            for line in metrics.read_text().splitlines():
                record = json.loads(line) if line.endswith("}") else {}
                if record.get("kind") == "epoch" and record.get("phase") == "finetune":
                    return record
        if proc.poll() is not None:
            raise RuntimeError(f"the run to be killed exited ({proc.returncode}) before its first finetune epoch; see {run}.log")
        time.sleep(0.05)
    raise TimeoutError(f"no finetune epoch in {run} after {timeout:.0f} s")


def _last_line(log: Path) -> str:
    lines = [l for l in log.read_text(errors="replace").splitlines() if l.strip()] if log.is_file() else []
    return lines[-1] if lines else "no output"


def kill_and_resume(settings: Settings, done: dict[str, Any]) -> dict[str, Any]:
    """SIGKILL a second run of the same recipe mid-way through its finetune phase, ``--resume``
    it, and compare it with the uninterrupted run of ``flowers_run``."""
    reference = done.get("1-flowers")
    if not reference or "_run_dir" not in reference:
        raise RuntimeError("needs part 1-flowers (the uninterrupted run) in the same run; run --only 1-flowers,1-resume")
    ref, cut = Path(reference["_run_dir"]), fresh_dir(Path(settings.workdir) / "flowers-cut")
    overrides = flowers_overrides(settings, flowers_root(settings))
    log = cut.with_name(cut.name + ".log")
    with open(log, "w") as out:
        proc = subprocess.Popen(cli_command(*finetune_argv(overrides, cut)), stdout=out, stderr=subprocess.STDOUT)
        try:
            first = _wait_for_finetune_epoch(cut, proc, timeout=600)
            time.sleep(KILL_AT * first["seconds"])
            if proc.poll() is not None:
                raise RuntimeError(f"the run finished ({proc.returncode}) before the kill; it is too short to cut")
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    state = load_checkpoint(cut / "checkpoints" / "last.pt")
    killed_at = {"phase": state["phase"], "epoch": int(state["epoch"]), "step": int(state["step"])}
    with open(log, "a") as out:
        resumed = subprocess.run(cli_command("finetune", "--resume", str(cut)), stdout=out, stderr=subprocess.STDOUT)
    if resumed.returncode != 0:
        raise RuntimeError(f"--resume exited {resumed.returncode}: {_last_line(log)}")
    return {"killed_returncode": proc.returncode, "killed_at": killed_at, **compare_runs(ref, cut)}


def compare_runs(ref: Path, cut: Path) -> dict[str, Any]:
    """What must be equal (the schedule) and how far the rest is apart. A record of an epoch cut
    and resumed counts only the images after the resume, so its loss is left out of the loss
    comparison and the image counts are reported apart."""
    a = [r for r in RunDir(ref).read_metrics() if r.get("kind") == "epoch"]
    b = [r for r in RunDir(cut).read_metrics() if r.get("kind") == "epoch"]
    plan = lambda records: [(r["phase"], r["epoch"], r["base_lr"]) for r in records]
    whole = [(x, y) for x, y in zip(a, b) if x["images"] == y["images"]]
    wa, wb = load_file(str(ref / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    float_keys = [k for k in wa if wa[k].is_floating_point()]
    max_diff = max((float((wa[k].float() - wb[k].float()).abs().max()) for k in float_keys), default=0.0)
    ta, tb = read_summary(ref)["test"], read_summary(cut)["test"]
    return {
        "schedule_equal": plan(a) == plan(b),
        "epochs": len(a),
        "partial_epochs": [f"{y['phase']} epoch {y['epoch']}: {y['images']} of {x['images']} images"
                           for x, y in zip(a, b) if x["images"] != y["images"]],
        "weights_bitwise_equal": wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa),
        "weights_max_abs_diff": max_diff,
        "train_loss_max_abs_diff": max((abs(x["train_loss"] - y["train_loss"]) for x, y in whole), default=0.0),
        "test_top1": [ta["top1"], tb["top1"]],
        "test_images_apart": abs(round(ta["top1"] * ta["n"]) - round(tb["top1"] * tb["n"])),
    }


def evaluate_and_export(settings: Settings, done: dict[str, Any]) -> dict[str, Any]:
    """``transferkit evaluate`` (loads the run on the CPU, fp32) and ``export --format onnx``."""
    reference = done.get("1-flowers")
    if not reference or "_run_dir" not in reference:
        raise RuntimeError("needs part 1-flowers (a finished run) in the same run; run --only 1-flowers,1-eval-export")
    run = reference["_run_dir"]
    text = run_cli(["evaluate", run])
    top1, n = re.search(r"top1 ([0-9.]+)", text), re.search(r"on (\d+) images", text)
    if not top1 or not n:
        raise RuntimeError(f"evaluate printed no top1: {text.strip().splitlines()[:1]}")
    run_cli(["export", run, "--format", "onnx"])
    manifest = json.loads((Path(run) / "model.onnx.json").read_text())
    check = manifest["verification"]
    return {"evaluate_top1": float(top1.group(1)), "evaluate_n": int(n.group(1)), "training_test_top1": reference["test_top1"],
            "onnx_max_abs_diff": check["max_abs_diff"], "onnx_tolerance": check["tolerance"],
            "onnx_top1_agreement": check.get("top1_agreement"), "onnx_mb": (Path(run) / "model.onnx").stat().st_size / 1e6}


def make_cpu_reference(settings: Settings, path: str) -> None:
    """Stage 1's recipe and overrides on the CPU; its test accuracy to ``path`` (JSON)."""
    import os
    import platform

    overrides = {**flowers_overrides(settings, flowers_root(settings)), "train.device": "cpu"}
    run = fresh_dir(Path(settings.workdir) / "flowers-cpu")
    run_cli(finetune_argv(overrides, run))
    summary = read_summary(run)
    record = {
        "test_top1": summary["test"]["top1"], "test_n": summary["test"]["n"], "overrides": shown_overrides(settings, overrides),
        "device": summary["device"], "train_seconds": sum(info["seconds"] for info in summary["phases"].values()),
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"), "command": "python benchmarks/gpu.py --make-cpu-reference",
    }
    target = Path(path) if Path(path).is_absolute() else ROOT / path
    target.write_text(json.dumps(record, indent=2) + "\n")
    print(f"CPU reference: test accuracy {record['test_top1']:.4f} on {record['test_n']} images -> {path}")
