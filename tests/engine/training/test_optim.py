"""The optimizer: AdamW fused on CUDA, the default implementation elsewhere (CPU runs unchanged)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from transferkit.engine.training import optim
from transferkit.recipe import TrainConfig


def _built_with(monkeypatch: pytest.MonkeyPatch, device_type: str | None, optimizer: str = "adamw") -> dict[str, Any]:
    seen: dict[str, Any] = {}

    class Recorder:
        def __init__(self, groups: Any, **kwargs: Any) -> None:
            seen.update(kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", Recorder)
    monkeypatch.setattr(torch.optim, "SGD", Recorder)
    if device_type is not None:
        monkeypatch.setattr(optim, "params_device_type", lambda groups: device_type)
    optim.build_optimizer(nn.Linear(3, 2), 1e-3, TrainConfig(optimizer=optimizer))
    return seen


def test_adamw_is_fused_when_the_parameters_are_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _built_with(monkeypatch, "cuda").get("fused") is True


def test_adamw_on_the_cpu_keeps_the_default_implementation(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "fused" not in _built_with(monkeypatch, None)  # real CPU parameters
    assert "fused" not in _built_with(monkeypatch, "cpu")
    assert "fused" not in _built_with(monkeypatch, "cuda", optimizer="sgd")


def test_a_cpu_adamw_is_not_fused() -> None:
    built = optim.build_optimizer(nn.Linear(3, 2), 1e-3, TrainConfig())
    assert isinstance(built, torch.optim.AdamW) and not built.defaults.get("fused")


def test_params_device_type() -> None:
    groups = optim.param_groups(nn.Linear(3, 2).named_parameters(), 1e-3, 0.01)
    assert optim.params_device_type(groups) == "cpu"
    assert optim.params_device_type([]) is None
