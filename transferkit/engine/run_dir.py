"""The run directory: resolved recipe, metrics.jsonl, checkpoints, final model, plots, summary."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import tomli_w

from ..errors import TransferkitError
from ..recipe import Recipe
from .checkpoint import atomic_write

PHASE_ORDER = {"extract": 0, "finetune": 1}


class RunDir:
    """Paths and writers of one run's directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # called with each record appended to metrics.jsonl (e.g. the TensorBoard sink)
        self.observers: list[Callable[[dict[str, Any]], None]] = []

    @classmethod
    def create(cls, recipe: Recipe, output: str | Path | None = None) -> "RunDir":
        if output is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = Path("runs") / recipe.name / stamp
            suffix = 1
            while path.exists():
                suffix += 1
                path = Path("runs") / recipe.name / f"{stamp}-{suffix}"
        else:
            path = Path(output)
            if (path / "checkpoints" / "last.pt").exists() or (path / "model.safetensors").exists():
                raise TransferkitError(
                    f"--output {path}: already holds a run; resume it with --resume {path} or choose another directory"
                )
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``.lock`` for the run's lifetime: a second run (or resume) into the same directory
        is refused while this one lives; the OS drops the lock when the process dies, even by SIGKILL."""
        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise TransferkitError(
                f"{self.path}: another transferkit run (pid {holder}) is using this directory; wait for it to end,"
                " or choose another --output"
            ) from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    # -- paths ---------------------------------------------------------------------------------
    @property
    def recipe_file(self) -> Path:
        return self.path / "recipe.toml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def model_file(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def manifest_file(self) -> Path:
        return self.path / "manifest.json"

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    # -- writers -------------------------------------------------------------------------------
    def write_recipe(self, recipe: Recipe) -> None:
        text = "# The fully resolved recipe of this run (defaults and --set overrides applied).\n"
        text += tomli_w.dumps(recipe.to_dict())
        atomic_write(self.recipe_file, lambda fh: fh.write(text.encode()))

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_file, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
        for observe in self.observers:
            observe(record)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.exists():
            return []
        records = []
        for line in self.metrics_file.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
        return records

    def truncate_metrics(self, phase: str, epochs_done: int) -> None:
        """Drop records a crash left behind after the checkpoint being resumed from."""
        limit = (PHASE_ORDER[phase], epochs_done)
        keep = [
            r for r in self.read_metrics()
            if r.get("kind") != "epoch" or (PHASE_ORDER.get(r["phase"], 9), r["epoch"]) <= limit
        ]
        keep = [r for r in keep if r.get("kind") != "test" or PHASE_ORDER.get(r["phase"], 9) < PHASE_ORDER[phase]]
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep)
        atomic_write(self.metrics_file, lambda fh: fh.write(text.encode()))

    def write_json(self, path: Path, data: Any) -> None:
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        atomic_write(path, lambda fh: fh.write(text.encode()))
