"""Freezing policies: which backbone parameters train in each phase, and the BatchNorm mode."""

from __future__ import annotations

from torch import nn

from ..errors import RecipeError
from .classifier import Classifier


def freeze_backbone(model: Classifier) -> None:
    """Phase 1: no gradients anywhere in the backbone, BatchNorm in eval mode; the head trains."""
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    for p in model.head.parameters():
        p.requires_grad_(True)
    model.bn_eval = True


def unfreeze_backbone(model: Classifier, policy: str, bn: str = "eval") -> list[nn.Parameter]:
    """Phase 2: unfreeze ``all``, ``none`` or ``last:K`` stages; returns the unfrozen parameters."""
    freeze_backbone(model)
    if policy == "none":
        chosen: list[nn.Module] = []
    elif policy == "all":
        chosen = [model.backbone]
    else:
        k = int(policy.split(":", 1)[1])
        stages = model.stages()
        if k > len(stages):
            raise RecipeError(
                f"phases.finetune.unfreeze: last:{k} asks for more stages than the backbone has ({len(stages)});"
                f' use last:{len(stages)} or "all"'
            )
        chosen = stages[-k:]
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in chosen:
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                p.requires_grad_(True)
                params.append(p)
    model.bn_eval = bn == "eval"
    return params


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
