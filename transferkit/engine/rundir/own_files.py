"""Which files in a folder transferkit can prove it wrote, and the rules for touching them.

A folder becomes a run folder when ``RunDir.create`` writes its marker (``.transferkit-run``,
created with ``O_EXCL``). Only in a folder with the marker does a new run remove what a run that
died before its first checkpoint left, and then only the run's own names (``own_leftovers``):
``checkpoints/a.ckpt`` in a user's project folder is never ours. A folder without the marker that
already holds one of the run's names is refused in one line (``refuse_foreign``), so nothing is
removed, appended to or written over. Nothing here follows a symbolic link: entries are looked at
with ``lstat``, removed with ``unlink`` / ``rmdir``, and a link among the run's names is refused
(``refuse_links``) before anything is written.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from pathlib import Path

from ...errors import TransferkitError
from .layout import CHECKPOINTS, MARKER_FILE, RUN_FILES, RUN_FOLDERS

# the names a run writes inside its folders, and the temp files atomic_write makes of them
CHECKPOINT_NAMES = re.compile(r"^(last\.pt|best\.pt|phase1\.safetensors|index\.json|checksums\.json|"
                              r"epoch-[a-z0-9_]+-\d{3,}\.safetensors)$")
SNAPSHOT_FOLDER = re.compile(r"^cycle-\d+$")
SNAPSHOT_NAMES = re.compile(r"^(model\.safetensors|manifest\.json|recipe\.toml|checksums\.json)$")
TENSORBOARD_NAMES = re.compile(r"^events\.out\.tfevents\.[^/]+$")
TEMP_OF = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(\.tmp)?$")


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def is_regular(path: Path) -> bool:
    """A regular file, not a link (``lstat``)."""
    st = _lstat(path)
    return st is not None and stat.S_ISREG(st.st_mode)


def is_real_dir(path: Path) -> bool:
    """A folder, not a link to one (``lstat``)."""
    st = _lstat(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def has_marker(folder: str | Path) -> bool:
    """The folder was made a run folder by transferkit (its marker is a regular file)."""
    return is_regular(Path(folder) / MARKER_FILE)


def write_marker(folder: str | Path) -> None:
    """Mark ``folder`` as a run folder transferkit made (kept when already there)."""
    path = Path(folder) / MARKER_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        if is_regular(path):
            return
        raise TransferkitError(f"{path}: not a regular file (a link?); remove it, or choose another --output") from None
    except OSError as exc:
        raise TransferkitError(f"{path}: cannot write it ({exc.strerror}); choose a writable folder") from None
    with os.fdopen(fd, "w") as fh:
        json.dump({"format": "transferkit.run", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid()}, fh)
        fh.write("\n")


def _own_temp(name: str, own: re.Pattern[str] | tuple[str, ...]) -> bool:
    found = TEMP_OF.match(name)
    if not found:
        return False
    inner = found.group("name")
    return bool(own.match(inner)) if isinstance(own, re.Pattern) else inner in own


def _own_in(folder: Path, names: re.Pattern[str]) -> list[Path]:
    """Regular files of ``folder`` with one of ``names`` (or their temp files); none when it is a link."""
    if not is_real_dir(folder):
        return []
    return sorted(p for p in folder.iterdir()
                  if is_regular(p) and (names.match(p.name) or _own_temp(p.name, names)))


def own_temp_files(folder: str | Path) -> list[Path]:
    """Temp files ``atomic_write`` left of the run's own names (top level and ``checkpoints/``)."""
    folder = Path(folder)
    top = [p for p in folder.iterdir() if is_regular(p) and _own_temp(p.name, RUN_FILES)] if is_real_dir(folder) else []
    inside = [p for p in _own_in(folder / CHECKPOINTS, CHECKPOINT_NAMES) if TEMP_OF.match(p.name)]
    return sorted(top) + inside


def own_leftovers(folder: str | Path) -> list[Path]:
    """What a run that died before its first checkpoint left in ``folder``: its own files, the
    folders holding only its own files, and their temp files; nothing unless the folder has the
    marker (``.lock`` and the marker stay)."""
    folder = Path(folder)
    if not has_marker(folder):
        return []
    found = [folder / n for n in RUN_FILES if n not in (".lock", MARKER_FILE) and is_regular(folder / n)]
    found += [p for p in folder.iterdir() if is_regular(p) and _own_temp(p.name, RUN_FILES)]
    found += [folder / n for n in RUN_FOLDERS if is_real_dir(folder / n)]
    return found


def remove_own(path: Path) -> bool:
    """Remove one of ``own_leftovers``: a file by ``unlink``; a folder's own names only, then the
    folder when that emptied it. Whether ``path`` is gone."""
    if not is_real_dir(path):
        if is_regular(path):
            path.unlink()
        return not os.path.lexists(path)
    if path.name == CHECKPOINTS:
        inside = _own_in(path, CHECKPOINT_NAMES)
    elif path.name == "tensorboard":
        inside = _own_in(path, TENSORBOARD_NAMES)
    else:  # snapshots/cycle-N/{model, manifest, recipe, checksums}
        inside = []
        for cycle in sorted(path.iterdir()):
            if SNAPSHOT_FOLDER.match(cycle.name) and is_real_dir(cycle):
                for own in _own_in(cycle, SNAPSHOT_NAMES):
                    own.unlink()
                _rmdir_if_empty(cycle)
    for own in inside:
        own.unlink()
    return _rmdir_if_empty(path)


def _rmdir_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


def foreign_names(folder: str | Path) -> list[str]:
    """The run's names already in a folder without the marker (a user's folder, or a run from
    before markers existed): none of them is transferkit's to remove or write over."""
    folder = Path(folder)
    if not is_real_dir(folder) or has_marker(folder):
        return []
    return [n for n in RUN_FILES + RUN_FOLDERS if os.path.lexists(folder / n)]


def linked_names(folder: str | Path) -> list[Path]:
    """Symbolic links among the run's names in ``folder``, its ``checkpoints/`` and ``snapshots/``."""
    folder = Path(folder)
    links = [folder / n for n in RUN_FILES + RUN_FOLDERS if (folder / n).is_symlink()]
    for sub in (CHECKPOINTS, "snapshots"):
        if is_real_dir(folder / sub):
            for entry in (folder / sub).iterdir():
                if entry.is_symlink():
                    links.append(entry)
                elif sub == "snapshots" and is_real_dir(entry):
                    links += [p for p in entry.iterdir() if p.is_symlink()]
    return links


def refuse_links(folder: str | Path, flag: str) -> None:
    """One line when one of the run's names in ``folder`` is a symbolic link: transferkit writes
    and deletes only the files themselves, never through a link."""
    links = linked_names(folder)
    if links:
        raise TransferkitError(
            f"{flag} {folder}: {links[0]} is a symbolic link; transferkit does not write or delete through links:"
            " remove the link (or copy the real file in its place), or choose another folder"
        )


def refuse_foreign(folder: str | Path, flag: str) -> None:
    """One line when ``folder`` holds the run's names but transferkit cannot prove it wrote them."""
    names = foreign_names(folder)
    if names:
        raise TransferkitError(
            f"{flag} {folder}: already holds {', '.join(names)} that transferkit did not write (no {MARKER_FILE});"
            " nothing was changed: choose an empty or new folder, or move those files away"
        )
