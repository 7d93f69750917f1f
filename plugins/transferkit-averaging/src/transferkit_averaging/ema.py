"""Polyak averaging as an exponential moving average of the weights (Polyak & Juditsky 1992).

After every ``every``-th optimizer step: ``theta_ema <- d * theta_ema + (1 - d) * theta``. With
``warmup`` the decay ramps up as ``min(d, (1 + t) / (10 + t))`` (t = updates so far), so the
average is not dominated by the initial weights in short runs (as in TensorFlow's
ExponentialMovingAverage with num_updates, and timm's ModelEmaV2/V3).

BatchNorm buffers: ``buffers="copy"`` (default) copies the running statistics from the live
model at each update, the usual choice; ``"average"`` averages them like the weights.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """Exponential moving average of a model's parameters."""

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True, every: int = 1, buffers: str = "copy") -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if buffers not in ("copy", "average"):
            raise ValueError(f'buffers must be "copy" or "average", got {buffers!r}')
        self.decay, self.warmup, self.every, self.buffers = decay, warmup, every, buffers
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.steps = 0  # optimizer steps seen
        self.updates = 0  # averaging updates made

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        if self.steps % self.every:
            return
        d = self.current_decay()
        for avg, live in zip(self.module.parameters(), model.parameters()):
            avg.lerp_(live.detach(), 1.0 - d)
        for avg, live in zip(self.module.buffers(), model.buffers()):
            if self.buffers == "average" and avg.is_floating_point():
                avg.lerp_(live, 1.0 - d)
            else:
                avg.copy_(live)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "steps": self.steps, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.steps, self.updates = int(state["steps"]), int(state["updates"])
