"""Optimizers and schedules: no weight decay on norm and bias parameters; cosine with warmup."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import nn

from ...recipe import TrainConfig


def param_groups(named: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float) -> list[dict]:
    """Two groups: weights with decay; biases and 1-d (norm) parameters without."""
    decay, no_decay = [], []
    for name, p in named:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "lr": lr, "weight_decay": weight_decay, "name": "decay"})
    if no_decay:
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": "no_decay"})
    return groups


def layer_decay_groups(
    model: nn.Module, lr: float, weight_decay: float, decay: float, stages: Sequence[nn.Module]
) -> list[dict]:
    """Layer-wise LR decay (timm's ``param_groups_layer_decay``, AutoGluon's ``layerwise_lr_decay``):
    everything outside the backbone's ``stages`` (the head) at ``lr``, the last stage at
    ``lr x decay``, the one before at ``lr x decay^2``, ... Head groups first, so the first
    group's LR is the phase's."""
    depth = {id(p): len(stages) - i for i, stage in enumerate(stages) for p in stage.parameters()}
    by_depth: dict[int, list[tuple[str, nn.Parameter]]] = {}
    for name, p in model.named_parameters():
        by_depth.setdefault(depth.get(id(p), 0), []).append((name, p))
    groups = []
    for d in sorted(by_depth):
        for group in param_groups(by_depth[d], lr * decay**d, weight_decay):
            if d:
                group["name"] = f"stage -{d} {group['name']}"
            groups.append(group)
    return groups


def build_optimizer(
    model: nn.Module, lr: float, cfg: TrainConfig, *, layer_decay: float = 1.0, stages: Sequence[nn.Module] | None = None
) -> torch.optim.Optimizer:
    if layer_decay < 1.0 and stages:
        groups = layer_decay_groups(model, lr, cfg.weight_decay, layer_decay, stages)
    else:
        groups = param_groups(model.named_parameters(), lr, cfg.weight_decay)
    if cfg.optimizer == "sgd":  # PyTorch's default on CUDA is already its multi-tensor (foreach) SGD
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    # on CUDA the fused AdamW: one kernel for every parameter instead of several per tensor (the
    # CPU keeps the default implementation, so CPU runs stay bitwise as they were)
    fused = params_device_type(groups) == "cuda"
    return torch.optim.AdamW(groups, lr=lr, **({"fused": True} if fused else {}))


def params_device_type(groups: Sequence[dict]) -> str | None:
    """The device type every parameter of ``groups`` is on, or None when they are on several (or none)."""
    types = {p.device.type for g in groups for p in g["params"]}
    return types.pop() if len(types) == 1 else None


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, cycles: int = 1
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the base LR, then half a cosine down to 0, stepped once per batch. With
    ``cycles`` > 1 the cosine restarts at the base LR ``cycles`` times (snapshot ensembles,
    Huang et al. 2017); warmup happens in the first cycle only."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1) if total_steps > 1 else 0
    cycle_len = max(1, total_steps // max(1, cycles))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if cycles > 1:
            progress = (step % cycle_len) / cycle_len
        else:
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
