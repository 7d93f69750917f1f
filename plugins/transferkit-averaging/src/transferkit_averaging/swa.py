"""Stochastic Weight Averaging (Izmailov et al. 2018): the uniform average of the weights at the
end of every epoch from ``start_epoch`` on (counted within the averaged phase).

The average of weights is not the weights of an average network's statistics: when BatchNorm
trained, its running statistics are recomputed for the averaged weights on the training data
before evaluation (``finalize``, the engine calls it with a pass of training images). When BN
stays in eval mode the statistics never changed and are simply copied.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import nn


class SWA:
    """Uniform weight average over epoch ends, with BatchNorm recalibration."""

    def __init__(self, model: nn.Module, start_epoch: int = 1) -> None:
        if start_epoch < 1:
            raise ValueError(f"start_epoch must be >= 1, got {start_epoch}")
        self.start_epoch = start_epoch
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.averaged = 0  # epochs in the average

    def update(self, model: nn.Module) -> None:
        """SWA averages at epoch ends; optimizer steps need nothing."""

    @torch.no_grad()
    def epoch_end(self, model: nn.Module, epoch: int) -> None:
        if epoch < self.start_epoch:
            return
        n = self.averaged
        for avg, live in zip(self.module.parameters(), model.parameters()):
            if n == 0:
                avg.copy_(live)
            else:
                avg.add_(live.detach() - avg, alpha=1.0 / (n + 1))  # running mean
        for avg, live in zip(self.module.buffers(), model.buffers()):
            avg.copy_(live)
        self.averaged += 1

    @torch.no_grad()
    def finalize(self, batches: Iterable[torch.Tensor]) -> None:
        """Recompute BatchNorm running statistics of the averaged weights (cumulative average)."""
        norms = [m for m in self.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms or self.averaged == 0:
            return
        momenta = {}
        for bn in norms:
            bn.reset_running_stats()
            momenta[bn] = bn.momentum
            bn.momentum = None  # cumulative moving average over all batches
            bn.train()
        for images in batches:
            self.module(images)
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        self.module.eval()

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "averaged": self.averaged}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.averaged = int(state["averaged"])
