"""An image size the device cannot hold fails in validate and plan (and before finetune decodes),
with the estimate, instead of dying out of memory."""

from __future__ import annotations

import pytest
import torch

from transferkit.cli import main
from transferkit.engine.preflight import memory_estimate
from transferkit.engine.preflight.memory_estimate import activation_bytes_per_pixel, estimate_training_memory
from transferkit.recipe_loading import load_recipe
from transferkit.testing import TinyCNN, write_recipe

GB = 2**30


def test_activation_memory_counts_every_output_and_scales_with_pixels():
    kept, largest = activation_bytes_per_pixel(TinyCNN(width=8))
    # per 64 x 64 input: stem conv, BN, ReLU at 32 x 32 x 8; stage conv, BN, ReLU at 16 x 16 x 16; pool 16
    expected = (3 * 32 * 32 * 8 + 3 * 16 * 16 * 16 + 16) * 4 / (64 * 64)
    assert kept == pytest.approx(expected) and largest == pytest.approx(32 * 32 * 8 * 4 / (64 * 64))


def test_the_estimate_is_close_to_what_a_training_step_keeps(tiny_recipe):
    tiny_recipe["data"]["image_size"] = 128
    estimate = estimate_training_memory(load_recipe(tiny_recipe), TinyCNN())
    backbone = TinyCNN()
    x = torch.randn(tiny_recipe["data"]["batch_size"], 3, 128, 128)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
        backbone(x).sum().backward()
    assert 0.5 * sum(saved) <= estimate.activations <= 2.0 * sum(saved)


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_an_image_size_beyond_the_device_fails_with_the_estimate(tiny_recipe, tmp_path, monkeypatch, capsys, command):
    monkeypatch.setattr(memory_estimate, "device_memory", lambda runtime: (2.0 * GB, "machine's RAM (CPU training)"))
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main([command, str(path), "--set", "data.image_size=4000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data.image_size = 4000 needs about" in err
    assert "has 2.0 GB; lower data.image_size or data.batch_size (about" in err
    assert main([command, str(path)]) == 0
    assert "memory: about 0.0 GB for a training batch of 8 at 32 px" in capsys.readouterr().out


def test_finetune_refuses_before_decoding(tiny_recipe, tmp_path, monkeypatch, capsys):
    from transferkit.engine import prepare

    monkeypatch.setattr(memory_estimate, "device_memory", lambda runtime: (2.0 * GB, "machine's RAM (CPU training)"))
    monkeypatch.setattr(prepare, "decode_splits", lambda *a, **k: pytest.fail("decoded before checking memory"))
    tiny_recipe["data"]["image_size"] = 4000
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["finetune", str(path), "--output", str(tmp_path / "run")]) == 2
    assert "data.image_size = 4000 needs about" in capsys.readouterr().err and not (tmp_path / "run").exists()
