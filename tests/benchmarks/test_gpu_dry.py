"""benchmarks/gpu.py --dry: every stage of the GPU script at toy sizes on the CPU, so the script
the GPU minutes are spent on cannot fail there for a typo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRY_LABEL = "dry run (CPU, toy sizes): not a measurement"
SECTIONS = ("## Summary", "### Against the targets", "## 1. Correctness on CUDA", "## 2. Raw throughput",
            "## 3. The engine", "## 4. The limit")

pytestmark = pytest.mark.slow  # about a minute on 2 busy cores: several processes import torch


def _gpu_py(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """With a CPU reference for the toy recipe (what --make-cpu-reference writes; its accuracy is
    test data here), so stage 1's comparison runs too."""
    folder = tmp_path_factory.mktemp("gpu-dry")
    overrides = {"data.root": "(generated toy images)", "data.image_size": "32", "data.batch_size": "4",
                 "phases.extract.epochs": "1", "phases.finetune.epochs": "2", "train.checkpoint_every_steps": "2",
                 "train.folds": "1", "train.device": "cpu"}
    (folder / "cpu.json").write_text(json.dumps({"test_top1": 0.5, "test_n": 6, "overrides": overrides}))
    _gpu_py("--cpu-reference", str(folder / "cpu.json"), "--out", str(folder / "RESULTS-gpu.md"))
    return (folder / "RESULTS-gpu.md").read_text(), json.loads((folder / "RESULTS-gpu.json").read_text())


def test_every_part_reports_figures_not_errors(dry_run):
    _, results = dry_run
    parts = results["parts"]
    assert set(parts) == {"2-resnet50", "2-lite0", "2c-resnet50", "2c-lite0", "1-flowers", "1-eval-export", "1-resume",
                          "1-fp16", "3-resnet50", "3-lite0"}
    failed = {name: part.get("error") for name, part in parts.items() if part["status"] != "ok"}
    assert not failed
    for key in ("resnet50", "lite0"):
        for name in (f"2-{key}", f"2c-{key}"):
            assert parts[name]["train_images_per_second"] > 0 and parts[name]["extract_images_per_second"] > 0
        engine = parts[f"3-{key}"]
        assert engine["train_images_per_second"] > 0 and engine["feature_cache_images_per_second"] > 0
        assert all(p["images_per_second"] > 0 for p in engine["pipeline"].values())
    assert parts["2-resnet50"]["forward_flops"] > 0
    assert 0 <= parts["1-flowers"]["test_top1"] <= 1
    assert parts["1-flowers"]["cpu_reference"]["status"] == "ok"
    assert parts["1-flowers"]["images_apart"] == abs(parts["1-flowers"]["test_correct"] - 3)
    assert parts["1-eval-export"]["onnx_max_abs_diff"] <= parts["1-eval-export"]["onnx_tolerance"]


def test_resume_after_sigkill_on_the_cpu_is_exact(dry_run):
    cut = dry_run[1]["parts"]["1-resume"]
    assert cut["killed_returncode"] == -9 and cut["killed_at"]["phase"] == "finetune"
    assert cut["schedule_equal"] and cut["weights_bitwise_equal"]


def test_markdown_holds_every_section_and_labels_the_figures(dry_run):
    text, _ = dry_run
    for section in SECTIONS:
        assert section in text
    assert "| error" not in text and "timed out" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ResNet-50 (`resnet50`) | eager")]
    assert rows and rows[0].count(DRY_LABEL) >= 4  # every figure in the row carries the label
    assert str(ROOT) not in text  # no path of the machine it ran on
