"""Early stopping within a phase (``train.early_stopping``). Which weights the run ends with
afterwards is ``train.final``'s choice (``final.choice``), made once training has stopped,
however it stopped."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ...recipe import EarlyStopping


@dataclass
class EarlyStopper:
    """Keras' EarlyStopping for one phase: ``stopped`` once ``metric`` has not improved by more
    than ``min_delta`` for ``patience`` epochs in a row."""

    patience: int
    metric: str
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False

    @classmethod
    def from_recipe(cls, config: EarlyStopping | None) -> "EarlyStopper | None":
        return None if config is None else cls(config.patience, config.metric, config.min_delta)

    @property
    def higher_is_better(self) -> bool:
        return self.metric != "val_loss"

    def update(self, epoch: int, record: Mapping[str, Any]) -> bool:
        """Take one epoch's record (``val_loss``, ``val_top1``, ``val_macro_f1``); True once stopped."""
        value = float(record[self.metric])
        if self.best is None or (value > self.best + self.min_delta if self.higher_is_better else value < self.best - self.min_delta):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
            self.stopped = self.bad_epochs >= self.patience
        return self.stopped

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("metric") == self.metric:  # the recipe is the run's own (checked on resume)
            self.best, self.best_epoch = state.get("best"), int(state.get("best_epoch", 0))
            self.bad_epochs, self.stopped = int(state.get("bad_epochs", 0)), bool(state.get("stopped", False))
