"""One epoch of training, and the one training step that lr-find shares. Everything
phase-specific is passed in (see ``phases``); evaluation is ``evaluation.predict``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NonFiniteLossError
from ..progress import progress
from .runtime import Runtime


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
    cached features). Returns loss, accuracy, images and seconds."""
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
            raise NonFiniteLossError(
                f"{where}, step {first_step + step + 1}: the loss is {loss.item()}; lower the learning rate or check"
                " the data; the last good checkpoint is kept (checkpoints/last.pt)"
            )
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
