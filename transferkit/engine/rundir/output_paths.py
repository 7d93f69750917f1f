"""Where a command may write: checked before any image is decoded, and never over a run's own files.

``export``, ``report``, ``finetune --output`` and a plugin's new model folder
(``RunDir.write_model_folder``) go through these (as should any later ``--output``), so a typo
cannot overwrite what a run wrote (its ``model.safetensors``, ``manifest.json``, checkpoints...)
and an unusable path fails at once instead of after minutes of decoding.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ...errors import TransferkitError
from .layout import owning_run


def refuse_run_files(path: str | Path, flag: str) -> None:
    """One line when ``path`` is one of a training run's own files (or inside its checkpoints...)."""
    run = owning_run(path)
    if run is not None:
        raise TransferkitError(
            f"{flag} {path}: that is one of the files of run {run} (its model, manifest, checkpoints or records);"
            " choose another path, e.g. a new file name beside them"
        )


def check_output_file(path: str | Path, flag: str) -> Path:
    """A file a command will write: not a folder, not a run's own file, in a folder that exists
    (or can be made) and is writable. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise TransferkitError(f"{flag} {path}: is a folder; name a file")
    refuse_run_files(path, flag)
    _check_writable(path.parent, path, flag)
    return path


def check_output_folder(path: str | Path, flag: str) -> Path:
    """A folder a command will write into: not a file, not inside a run's own files, writable (or
    creatable). Returns the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise TransferkitError(f"{flag} {path}: is a file, not a folder; choose a folder path")
    refuse_run_files(path, flag)
    _check_writable(path, path, flag)
    return path


def _check_writable(folder: Path, target: Path, flag: str) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TransferkitError(f"{flag} {target}: {existing} is a file, not a folder; choose another path")
    if not writable(existing):
        raise TransferkitError(f"{flag} {target}: the folder {existing} is not writable; choose a writable location")


def writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried, not guessed from permission bits (root
    passes those everywhere, a read-only file system does not)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".transferkit-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True
