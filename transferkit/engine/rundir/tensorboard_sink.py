"""``train.tensorboard = true``: the run's scalars as TensorBoard events in ``RUN_DIR/tensorboard/``,
beside ``metrics.jsonl`` (which stays the record of the run).

The sink listens to the two streams the trainer already has: each optimizer step (the trainer's
``on_step`` callbacks) and each record appended to ``metrics.jsonl`` (``RunDir.observers``).
Tags, per phase (``extract``, ``finetune``):

- ``<phase>/step_loss``, ``<phase>/step_lr`` at the step within the phase (epoch x steps + step);
- ``<phase>/train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``val_macro_f1``,
  ``images_per_second`` at the epoch (1-based);
- ``<phase>/test_acc``, ``test_macro_f1`` (``test_acc_<averager>`` for averaged weights) after the phase.

Only rank 0 writes (it alone appends to ``metrics.jsonl``); the writer is closed at the end of
training and on any error.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

from ...errors import RecipeError
from ...recipe import Recipe
from .run_dir import RunDir

FOLDER = "tensorboard"
EPOCH_SCALARS = {
    "train_loss": "train_loss", "train_acc": "train_acc", "val_loss": "val_loss", "val_top1": "val_acc",
    "val_macro_f1": "val_macro_f1", "images_per_second": "images_per_second",
}


def require_tensorboard(recipe: Recipe) -> None:
    """Fail before anything is written when the recipe asks for TensorBoard and it is missing."""
    if not recipe.train.tensorboard:
        return
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401 - imports the tensorboard package
    except ImportError:
        raise RecipeError(
            "train.tensorboard = true: the tensorboard package is not installed; pip install 'transferkit[tensorboard]'"
            " or set train.tensorboard = false"
        ) from None


class TensorBoardSink:
    """Scalars of one run, written with ``torch.utils.tensorboard.SummaryWriter``."""

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # the optional tensorboard package

        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def on_step(self, info: dict[str, Any]) -> None:
        """A trainer step callback: ``{"phase", "epoch" (0-based), "step" (1-based), "steps", "loss", "lr"}``."""
        phase = info["phase"]
        step = int(info["epoch"]) * int(info["steps"]) + int(info["step"])
        self.writer.add_scalar(f"{phase}/step_loss", float(info["loss"]), step)
        self.writer.add_scalar(f"{phase}/step_lr", float(info["lr"]), step)

    def on_record(self, record: dict[str, Any]) -> None:
        """A ``metrics.jsonl`` record: per-epoch train/val figures, or a phase's test figures."""
        phase = record.get("phase")
        if record.get("kind") == "epoch":
            for key, tag in EPOCH_SCALARS.items():
                if isinstance(record.get(key), (int, float)):
                    self.writer.add_scalar(f"{phase}/{tag}", float(record[key]), int(record["epoch"]))
        elif record.get("kind") == "test":
            suffix = f"_{record['weights']}" if record.get("weights") else ""
            for key, tag in (("top1", "test_acc"), ("macro_f1", "test_macro_f1")):
                if isinstance(record.get(key), (int, float)):
                    self.writer.add_scalar(f"{phase}/{tag}{suffix}", float(record[key]), 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@contextlib.contextmanager
def tensorboard_sink(recipe: Recipe, run: RunDir, *, enabled: bool = True) -> Iterator[list[Callable[[dict[str, Any]], None]]]:
    """While open: the step callbacks to hand the trainer (none when TensorBoard is off or this
    is not rank 0); epoch and test records reach the sink through ``run.observers``."""
    if not (enabled and recipe.train.tensorboard):
        yield []
        return
    require_tensorboard(recipe)
    sink = TensorBoardSink(run.path / FOLDER)
    run.observers.append(sink.on_record)
    try:
        yield [sink.on_step]
    finally:
        run.observers.remove(sink.on_record)
        sink.close()
