"""A multi-label run's fine-tuning reads the device as the single-label loop does: every step on
the CPU, every ``SYNC_EVERY`` steps on CUDA (``loop.defers_syncs``, made to say so here), and a
non-finite loss is still named by its step either way."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
import torch
import torch.nn.functional as F

import transferkit
from transferkit.engine.multilabel import phases
from transferkit.errors import NonFiniteLossError
from transferkit.testing import make_multilabel_recipe, registered_backbone, write_multilabel_csv


@pytest.fixture(scope="module")
def backbone() -> Iterator[str]:
    with registered_backbone() as name:
        yield name


def _run(backbone: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, on_device: bool, bad_call: int = 0) -> int:
    """Train a small multi-label run; the ``bad_call``-th fine-tuning loss is NaN. Returns how many
    tensor-to-Python reads the fine-tuning loop's own code made."""
    monkeypatch.setattr(phases, "defers_syncs", lambda runtime: on_device)
    calls = {"loss": 0, "reads": 0}

    def loss(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls["loss"] += 1
        value = F.binary_cross_entropy_with_logits(*args, **kwargs)
        return value * float("nan") if calls["loss"] == bad_call else value

    monkeypatch.setattr(phases, "F", SimpleNamespace(binary_cross_entropy_with_logits=loss))
    original = torch.Tensor.item

    def item(self: torch.Tensor) -> Any:
        if sys._getframe(1).f_code.co_filename == phases.__file__ and sys._getframe(1).f_code.co_name == "finetune":
            calls["reads"] += 1
        return original(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    csv = write_multilabel_csv(tmp_path / "data")
    recipe = make_multilabel_recipe(csv, backbone, phases={"finetune": {"epochs": 2}}, data={"batch_size": 4})
    transferkit.finetune(recipe, output=tmp_path / "run", quiet=True)
    return calls["reads"]


def test_on_the_device_path_the_loop_reads_once_per_epoch_not_once_per_step(backbone: str, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    host = _run(backbone, tmp_path / "host", monkeypatch, on_device=False)
    device = _run(backbone, tmp_path / "device", monkeypatch, on_device=True)
    assert host > 10  # several steps an epoch, each read (the CPU: a read costs nothing)
    assert device <= 2 * 2  # each epoch: the loss sum at its end, none per step (fewer than SYNC_EVERY steps)


@pytest.mark.parametrize("on_device", [False, True])
def test_a_non_finite_loss_names_its_step(on_device: bool, backbone: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NonFiniteLossError, match=r"phase finetune, epoch 1/2, step 3: the loss is nan; lower the learning rate") as err:
        _run(backbone, tmp_path, monkeypatch, on_device=on_device, bad_call=3)
    assert "checkpoints" not in str(err.value)  # a multi-label run keeps no last.pt to point to
