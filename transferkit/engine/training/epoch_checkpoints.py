"""Checkpoints kept at epoch ends: the best (by validation accuracy), the top-N epochs as
safetensors with an index (for checkpoint averaging; read back by ``RunDir.kept_checkpoints``),
and snapshots at the end of LR cycles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ...recipe import FINETUNE
from ..rundir.artifacts import read_verified, read_verified_json, remove_verified, write_verified
from ..rundir.checkpoint_io import save_checkpoint
from ..rundir.model_files import write_weights
from ..rundir.run_dir import RunDir


class CheckpointKeeper:
    """Decides what an epoch end writes, besides ``last.pt``."""

    def __init__(self, run: RunDir, keep_top: int = 0, best_score: float = -1.0) -> None:
        self.run, self.keep_top, self.best_score = run, keep_top, best_score

    def epoch_end(self, model: nn.Module, phase: str, epoch: int, score: float) -> None:
        if score >= self.best_score:
            self.best_score = score
            save_checkpoint(self.run.best_checkpoint, {"model": model.state_dict(), "phase": phase, "epoch": epoch, "top1": score})
        if self.keep_top > 0:
            self._keep(model, phase, epoch, score)

    def read_index(self) -> list[dict[str, Any]]:
        path = self.run.kept_index_file
        return read_verified_json(path) if path.is_file() else []

    def _keep(self, model: nn.Module, phase: str, epoch: int, score: float) -> None:
        entries = [e for e in self.read_index() if (e["phase"], e["epoch"]) != (phase, epoch)]
        name = f"epoch-{phase}-{epoch:03d}.safetensors"
        entries.append({"file": name, "phase": phase, "epoch": epoch, "score": score})
        # best first; among equals the later epoch
        entries.sort(key=lambda e: (e["score"], e["phase"] == FINETUNE, e["epoch"]), reverse=True)
        kept, dropped = entries[: self.keep_top], entries[self.keep_top :]
        if any(e["file"] == name for e in kept):
            write_weights(model.state_dict(), self.run.checkpoints, name)
        text = json.dumps(kept, indent=2) + "\n"
        write_verified(self.run.kept_index_file, text.encode())
        for entry in dropped:
            remove_verified(self.run.checkpoints / entry["file"])

    def snapshot(self, model: nn.Module, cycle: int, export: Any) -> Path:
        """A loadable run-like directory (model, manifest, recipe) for one LR cycle's end."""
        folder = self.run.path / "snapshots" / f"cycle-{cycle}"
        folder.mkdir(parents=True, exist_ok=True)
        export(model, folder)
        write_verified(RunDir(folder).recipe_file, read_verified(self.run.recipe_file))
        return folder
