"""The GPU branches of benchmarks/gpu.py's summary, which a dry run never takes: verdicts against
the targets, the engine's bottleneck by name, the card's peak. The figures are test data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from gpu_stages.report import render  # noqa: E402
from gpu_stages.verdicts import bottleneck, card_peak, limit  # noqa: E402

SETTINGS = {"dry": False, "data": "../shared/data/flowers12", "workdir": "(temporary)", "image_size": 224, "batch": 256,
            "warmup_steps": 10, "timed_steps": 30, "engine_copies": 10, "engine_epochs": 3, "engine_workers": 8,
            "pipeline_batches": 10, "compile_backend": "inductor", "cpu_reference": "benchmarks/flowers224-cpu.json"}


def _raw(train: float, extract: float) -> dict:
    return {"status": "ok", "backbone": "resnet50", "compiled": False, "runtime": "card, bf16, channels_last", "batch": 256,
            "image_size": 224, "forward_flops": 8.2e9, "train_flops": 24.6e9, "train_images_per_second": train,
            "train_warmup_seconds": 3.0, "train_peak_gib": 20.0, "extract_images_per_second": extract,
            "extract_warmup_seconds": 1.0, "extract_peak_gib": 5.0, "seconds": 10.0}


def _engine(train: float, pipeline: float) -> dict:
    return {"status": "ok", "backbone": "resnet50", "device": "card, bf16, channels_last", "train_images": 7200, "batch": 256,
            "workers": 8, "wall_seconds": 30.0, "train_images_per_second": train, "epoch_images_per_second": [train, train],
            "feature_cache_images_per_second": 5000.0, "seconds": 40.0,
            "pipeline": {"8": {"first_batch_seconds": 0.5, "images_per_second": pipeline, "batches": 10},
                         "0": {"first_batch_seconds": 0.3, "images_per_second": 700.0, "batches": 10}}}


@pytest.mark.parametrize(("card", "entry"), [("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"),
                                             ("NVIDIA H200", "H200 (SXM)"), ("NVIDIA H100 NVL", None), ("NVIDIA A100-SXM4-80GB", None)])
def test_card_peak_table(card, entry):
    found = card_peak(card)
    assert (found[0] if found else None) == entry


def test_fraction_of_peak_uses_the_counted_flops():
    parts = {"2-resnet50": _raw(4000.0, 12000.0)}
    row = limit(parts, "NVIDIA H100 80GB HBM3")["rows"][0]
    assert row["fraction"] == pytest.approx(4000.0 * 24.6e9 / 989e12)


def test_bottleneck_names_the_input_pipeline_or_the_loop():
    raw = _raw(4000.0, 12000.0)
    assert bottleneck(_engine(3900.0, 9000.0), raw).startswith("none")
    assert bottleneck(_engine(1000.0, 1200.0), raw).startswith("the input pipeline")
    assert bottleneck(_engine(2000.0, 9000.0), raw).startswith("the loop, not the data")


def test_gpu_summary_judges_each_figure_against_its_target():
    parts = {"2-resnet50": _raw(2400.0, 12000.0), "3-resnet50": _engine(1000.0, 1200.0),
             "1-flowers": {"status": "ok", "device": "card, bf16", "test_top1": 0.95, "test_n": 240, "test_correct": 228,
                           "wall_seconds": 30.0, "phase_seconds": {"extract": 2.0, "finetune": 10.0}, "overrides": {},
                           "cpu_reference": {"status": "ok", "test_top1": 0.9583, "test_n": 240}, "images_apart": 2},
             "1-resume": {"status": "error", "error": "RuntimeError: --resume exited 1: something"}}
    machine = {"card": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "cuda": "13.0", "cudnn": "91000", "python": "3.12.3",
               "cpu_cores": 16, "date": "2026-11-26 10:00", "sm": "9.0", "gpu_memory_gib": 79.2, "multiprocessors": 132}
    text = render({"settings": SETTINGS, "machine": machine, "parts": parts, "command": "python benchmarks/gpu.py",
                   "budget_s": 330.0, "wall_s": 300.0})
    assert "dry run" not in text
    assert "| ResNet-50 training, raw loop, eager | 2,400 img/s | >= 3000 img/s on an H100 (aim: 5000) | below: 80% of the target |" in text
    assert "| ResNet-50 feature extraction, raw loop, eager | 12,000 img/s | >= 10000 img/s on an H100 | meets |" in text
    assert "below; the input pipeline: 1,200 img/s from 8 loader workers" in text
    assert "| flowers12 test accuracy: GPU run vs CPU run | 2 test image(s) apart | at most 1 test image apart | below |" in text
    assert "| 1-resume | SIGKILL mid-phase + --resume | error: RuntimeError: --resume exited 1: something |" in text
    assert "table entry **H100 SXM**" in text and "| ResNet-50 | raw loop | 2,400 | 8.20 / 24.60 | 59.0 | 6.0 % |" in text
