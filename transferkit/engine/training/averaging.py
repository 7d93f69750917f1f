"""Weight averaging in a run: the recipe's averager follows the model through one phase
(``phases.averaged_phase``) and is evaluated beside it.

An averager is a ``transferkit.protocols.Averager`` (from ``register_averagers``, checked when
``create_averager`` builds it); its optional ``epoch_end`` and ``finalize`` are called from here.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from ...components import create_averager
from ...recipe import Recipe


class RunAverager:
    """The recipe's averager for the averaged phase, with the engine's calls in one place."""

    def __init__(self, recipe: Recipe, model: nn.Module) -> None:
        spec = recipe.averaging
        assert spec is not None
        self.name = spec.name
        self.inner = create_averager(spec.name, model, **spec.params)

    @property
    def module(self) -> nn.Module:
        return self.inner.module

    def update(self, model: nn.Module) -> None:
        self.inner.update(model)

    def epoch_end(self, model: nn.Module, epoch: int) -> None:
        hook = getattr(self.inner, "epoch_end", None)
        if callable(hook):
            hook(model, epoch)

    def finalize(self, batches: Iterable[torch.Tensor], bn_trains: bool) -> bool:
        """Let the averager recompute what averaging cannot (BatchNorm statistics when BN trained)."""
        hook = getattr(self.inner, "finalize", None)
        if callable(hook) and bn_trains:
            hook(batches)
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)
