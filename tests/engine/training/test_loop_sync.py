"""The training loop on CUDA keeps its sums on the device and reads them every SYNC_EVERY steps.
Checked on the CPU by making the loop take its CUDA path (``loop.defers_syncs``): the same weights,
the same figures, far fewer host reads, and a non-finite loss still named by its step."""

from __future__ import annotations

import sys
from typing import Any, Callable

import pytest
import torch
from torch import nn

from transferkit.engine.runtime.device import Runtime
from transferkit.engine.training import loop
from transferkit.engine.training.loop import StepSettings, train_epoch
from transferkit.errors import NonFiniteLossError

CPU = Runtime(torch.device("cpu"), None, False)
STEPS = 60


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 4, generator=gen), torch.randint(0, 3, (8,), generator=gen)) for _ in range(STEPS)]


def _epoch(on_device: bool, monkeypatch: pytest.MonkeyPatch, *, bad_step: int = 0, first_step: int = 0,
           on_step: list[Callable[[dict[str, Any]], None]] | None = None) -> tuple[nn.Module, dict[str, float]]:
    monkeypatch.setattr(loop, "defers_syncs", lambda runtime: on_device)
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    calls = {"n": 0}

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        out = model(x)
        return out * float("nan") if calls["n"] == bad_step else out

    settings = StepSettings(num_classes=3, label_smoothing=0.1, on_step=list(on_step or []))
    stats = train_epoch(model, forward, _batches(), optimizer, scheduler, CPU, settings, None, where="phase test",
                        first_step=first_step)
    return model, stats


def test_the_device_path_trains_the_same_weights_and_reports_the_same_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    host_model, host = _epoch(False, monkeypatch)
    device_model, device = _epoch(True, monkeypatch)
    for a, b in zip(host_model.parameters(), device_model.parameters()):
        assert torch.equal(a, b)
    assert device["acc"] == host["acc"] and device["images"] == host["images"] == STEPS * 8
    assert device["loss"] == pytest.approx(host["loss"], rel=1e-6)


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Tensor-to-Python reads (each a device sync on CUDA) made by the loop's own code."""
    counts = {"n": 0}
    for name in ("item", "__bool__", "__int__", "__float__"):
        original = getattr(torch.Tensor, name)

        def wrapped(self: torch.Tensor, *args: Any, _original: Any = original) -> Any:
            if sys._getframe(1).f_code.co_filename == loop.__file__:
                counts["n"] += 1
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return counts


def test_without_callbacks_the_device_path_reads_every_sync_every_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = _count_reads(monkeypatch)
    _epoch(False, monkeypatch)
    assert counts["n"] >= 3 * STEPS  # the CPU path: isfinite, the loss and the accuracy every step
    counts["n"] = 0
    _epoch(True, monkeypatch)
    checks = STEPS // loop.SYNC_EVERY + 1
    assert counts["n"] <= 3 * checks + 2  # flag + loss + accuracy at each check, and the returned figures


def test_with_callbacks_the_device_path_reads_the_loss_once_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    host_losses: list[float] = []
    _epoch(False, monkeypatch, on_step=[lambda info: host_losses.append(info["loss"])])
    counts = _count_reads(monkeypatch)
    losses: list[Any] = []
    _epoch(True, monkeypatch, on_step=[lambda info: losses.append(info["loss"])])
    assert all(type(v) is float for v in losses) and losses == host_losses
    assert counts["n"] <= STEPS + 3 * (STEPS // loop.SYNC_EVERY + 1) + 2


@pytest.mark.parametrize("on_device", [False, True])
def test_a_non_finite_loss_names_its_step(on_device: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NonFiniteLossError, match=r"phase test, step 17: the loss is nan"):
        _epoch(on_device, monkeypatch, bad_step=7, first_step=10)
    with pytest.raises(NonFiniteLossError, match=r"step 59: the loss is nan"):  # after the last check, caught at the end
        _epoch(on_device, monkeypatch, bad_step=59)


@pytest.mark.parametrize("on_device", [False, True])
def test_with_callbacks_a_non_finite_loss_stops_before_its_step_is_reported(on_device: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[int] = []
    with pytest.raises(NonFiniteLossError, match=r"step 7: the loss is nan"):
        _epoch(on_device, monkeypatch, bad_step=7, on_step=[lambda info: steps.append(info["step"])])
    assert steps == list(range(1, 7))  # a step callback (which may save last.pt) never sees the bad step
