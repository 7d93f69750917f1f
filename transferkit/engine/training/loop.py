"""One epoch of training, and the one training step that lr-find shares. Everything
phase-specific is passed in (see ``phases``); evaluation is ``evaluation.predict.predict``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import NonFiniteLossError
from ...progress import progress
from ..runtime.device import Runtime


@dataclass
class StepSettings:
    """What a training step needs besides the model and the batch."""

    num_classes: int
    label_smoothing: float = 0.0
    batch_augs: Sequence[Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = ()
    grad_clip: float = 0.0
    # called after each optimizer step with {"step": k (1-based), "lr": the LR used, "loss": ...}
    on_step: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    # per-class loss weights [C] on the training device (train.class_weights), or None
    class_weights: torch.Tensor | None = None


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against probability targets ``[N, C]`` (one-hot, smoothed or mixed).

    With ``class_weights`` ``w`` each sample's loss is weighted by ``sum_c target_c * w_c`` (its
    target's share of each class) and the sum is divided by the batch's total weight: for one-hot
    targets exactly ``F.cross_entropy(logits, labels, weight=w)``; smoothed or mixed targets
    weigh a sample by the classes it stands for."""
    per_sample = -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
    if class_weights is None:
        return per_sample.mean()
    sample_weights = targets.float() @ class_weights.float()
    return (per_sample * sample_weights).sum() / sample_weights.sum()


def make_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    targets = F.one_hot(labels, num_classes).float()
    if smoothing > 0:
        targets = targets * (1.0 - smoothing) + smoothing / num_classes
    return targets


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, grad_clip: float) -> float:
    """Backward, gradient clipping (after unscaling under fp16) and the optimizer step. Returns the
    first group's learning rate, the one this step used."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    lr_used = optimizer.param_groups[0]["lr"]
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return lr_used


# On CUDA, how many steps apart the loop reads the device (the progress line and the non-finite
# loss check) when no step callback needs the loss as a number; every read waits for the GPU
SYNC_EVERY = 25


def defers_syncs(runtime: Runtime) -> bool:
    """Whether the loop keeps its running sums on the device and reads them every ``SYNC_EVERY``
    steps (CUDA), rather than after every step (the CPU, where a read costs nothing)."""
    return runtime.device.type == "cuda"


KEPT = "; the last good checkpoint is kept (checkpoints/last.pt)"  # what a single-label run's error adds


def _non_finite(where: str, step: int, value: float, kept: str = KEPT) -> NonFiniteLossError:
    return NonFiniteLossError(f"{where}, step {step}: the loss is {value}; lower the learning rate or check the data{kept}")


class LossTally:
    """An epoch's summed loss and its first non-finite step, kept on the loss's device: ``check``
    reads them (one wait for the GPU), so a loop reads every ``SYNC_EVERY`` steps, not every step."""

    def __init__(self, device: torch.device, where: str, first_step: int = 0, kept: str = KEPT) -> None:
        self.where, self.first_step, self.kept = where, first_step, kept
        self.sum = torch.zeros((), dtype=torch.float64, device=device)
        self.first_bad = torch.zeros((), dtype=torch.int64, device=device)  # its 1-based step; 0: none yet
        self.bad_value = torch.zeros((), dtype=torch.float32, device=device)

    def add(self, loss: torch.Tensor, n: int, step: int) -> None:
        """The mean ``loss`` of ``n`` samples at the epoch's 0-based ``step``."""
        loss = loss.detach()
        newly = ~torch.isfinite(loss) & (self.first_bad == 0)
        self.first_bad = torch.where(newly, self.first_step + step + 1, self.first_bad)
        self.bad_value = torch.where(newly, loss.float(), self.bad_value)
        self.sum += loss.double() * n

    def check(self) -> None:
        """Raise ``NonFiniteLossError`` naming the first bad step, if there was one."""
        bad = int(self.first_bad.item())
        if bad:
            raise _non_finite(self.where, bad, float(self.bad_value.item()), self.kept)


def train_epoch(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    runtime: Runtime,
    settings: StepSettings,
    scaler: torch.amp.GradScaler | None,
    *,
    where: str,
    total: int | None = None,
    first_step: int = 0,
) -> dict[str, float]:
    """Train over ``batches``; ``forward`` maps inputs to logits (the whole model, or the head on
    cached features). Returns loss, accuracy, images and seconds.

    A non-finite loss raises ``NonFiniteLossError`` naming its step. On the CPU it is checked before
    that step's backward. On CUDA (``defers_syncs``) the loss, accuracy and a first-bad-step marker
    stay on the device: with step callbacks (which get the loss as a float) the loss is read once
    per step, before the backward, and checked there; without them the marker is read every
    ``SYNC_EVERY`` steps and at the end of the epoch, so the error comes at most that many steps
    late (after optimizer steps on the bad loss, but before the epoch ends and anything is saved)."""
    if defers_syncs(runtime):
        return _train_epoch_on_device(model, forward, batches, optimizer, scheduler, runtime, settings, scaler,
                                      where=where, total=total, first_step=first_step)
    model.train()
    loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    bar = progress(batches, total=total, desc=where)
    for step, (inputs, labels) in enumerate(bar):
        inputs, labels = runtime.to_device(inputs), labels.to(runtime.device, non_blocking=True)
        targets = make_targets(labels, settings.num_classes, settings.label_smoothing)
        for aug in settings.batch_augs:
            inputs, targets = aug(inputs, targets)
        with runtime.autocast():
            logits = forward(inputs)
        loss = soft_cross_entropy(logits, targets, settings.class_weights)
        if not torch.isfinite(loss):
            raise _non_finite(where, first_step + step + 1, loss.item())
        lr_used = backward_and_step(loss, optimizer, scaler, settings.grad_clip)
        scheduler.step()
        n = labels.numel()
        loss_sum += loss.item() * n
        correct += int((logits.argmax(dim=-1) == labels).sum())
        seen += n
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}")
        for callback in settings.on_step:
            callback({"step": step + 1, "lr": lr_used, "loss": loss.item()})
    bar.close()
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "images": seen, "seconds": seconds}


def _train_epoch_on_device(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    runtime: Runtime,
    settings: StepSettings,
    scaler: torch.amp.GradScaler | None,
    *,
    where: str,
    total: int | None,
    first_step: int,
) -> dict[str, float]:
    """``train_epoch`` without a host read per step (see its docstring)."""
    model.train()
    device = runtime.device
    tally = LossTally(device, where, first_step)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, start = 0, time.perf_counter()
    bar = progress(batches, total=total, desc=where)
    for step, (inputs, labels) in enumerate(bar):
        inputs, labels = runtime.to_device(inputs), labels.to(device, non_blocking=True)
        targets = make_targets(labels, settings.num_classes, settings.label_smoothing)
        for aug in settings.batch_augs:
            inputs, targets = aug(inputs, targets)
        with runtime.autocast():
            logits = forward(inputs)
        loss = soft_cross_entropy(logits, targets, settings.class_weights)
        value = None
        if settings.on_step:  # the callbacks get the loss as a float: one read, checked before the backward
            value = loss.item()
            if not math.isfinite(value):
                raise _non_finite(where, first_step + step + 1, value)
        n = labels.numel()
        tally.add(loss, n, step)
        lr_used = backward_and_step(loss, optimizer, scaler, settings.grad_clip)
        scheduler.step()
        correct += (logits.detach().argmax(dim=-1) == labels).sum()
        seen += n
        if (step + 1) % SYNC_EVERY == 0:
            tally.check()
            bar.set_postfix(loss=f"{tally.sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.3f}")
        for callback in settings.on_step:
            callback({"step": step + 1, "lr": lr_used, "loss": value})
    tally.check()
    bar.close()
    seconds = time.perf_counter() - start
    return {"loss": tally.sum.item() / max(seen, 1), "acc": correct.item() / max(seen, 1), "images": seen, "seconds": seconds}
