"""The names of a run directory's own files and folders, and which paths they cover: shared by
``run_dir`` (which writes them) and ``output_paths`` (which keeps commands from writing over them)."""

from __future__ import annotations

import os
from pathlib import Path

from .artifacts import CHECKSUMS_FILE

__all__ = ["CHECKPOINTS", "CHECKSUMS_FILE", "MANIFEST_FILE", "MARKER_FILE", "RUN_FILES", "RUN_FOLDERS", "WEIGHTS_FILE", "is_run",
           "owning_run", "owns"]

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
# written (O_EXCL) when transferkit makes a run folder: the proof that the run names in it are its own
MARKER_FILE = ".transferkit-run"
RUN_FILES = ("recipe.toml", METRICS_FILE, WEIGHTS_FILE, MANIFEST_FILE, "summary.json", CHECKSUMS_FILE, "curves.png",
             "confusion_matrix.png", "reliability.png", "splits.csv", "skipped_images.txt", "bad_images.txt", ".lock",
             MARKER_FILE)
RUN_FOLDERS = (CHECKPOINTS, "snapshots", "tensorboard", "folds")


def is_run(folder: str | Path) -> bool:
    """A folder a training run wrote (not a model folder derived from one, such as an average)."""
    folder = Path(folder)
    return (folder / METRICS_FILE).is_file() or (folder / CHECKPOINTS).is_dir()


def owns(folder: str | Path, path: str | Path) -> bool:
    """Whether ``path`` is one of the run files of ``folder`` (or inside its checkpoints,
    snapshots or TensorBoard folders)."""
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
    except ValueError:
        return False
    parts = rel.parts
    return bool(parts) and (parts[0] in RUN_FOLDERS or (len(parts) == 1 and parts[0] in RUN_FILES))


def owning_run(path: str | Path, depth: int = 4) -> Path | None:
    """The training run folder whose own files include ``path``, looking ``depth`` folders up
    (``RUN/snapshots/cycle-1/model.safetensors`` is three down)."""
    absolute = Path(os.path.abspath(path))
    for folder in list(absolute.parents)[:depth]:
        if is_run(folder) and owns(folder, absolute):
            return folder
    return None
