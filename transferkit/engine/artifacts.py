"""The files a run writes: written atomically, their sha256 recorded, and verified on every read.

Every folder that holds a run's files (the run directory, its ``checkpoints/``, a snapshot, an
averaged model folder) keeps ``checksums.json``: the sha256 of each file written into it through
``write_verified``. ``read_verified`` checks the bytes it returns against that record, so a flipped
bit in a checkpoint, a model or a manifest is one line naming the file (exit 2) instead of silently
different weights or labels; nothing is read from such a file, so nothing is written from it.

A crash can come between writing a file and recording its checksum, so the record is two-phase:
before the new file is renamed into place its digest is recorded as ``pending`` (the old and the
new content are both accepted), and after the rename it becomes the only one. A file with no
record (a run written before checksums existed) is read unverified.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from ..errors import CorruptFileError, TransferkitError

CHECKSUMS_FILE = "checksums.json"
TEMP_SUFFIX = ".tmp"
# what atomic_write's temp files look like (".<name>.<8 random characters>[.tmp]"): removed when a
# run that crashed is started again
TEMP_PATTERN = re.compile(r"^\..+\.[a-z0-9_]{8}(\.tmp)?$")


def encode_text(text: str) -> bytes:
    """UTF-8, with file names that are not UTF-8 (surrogate escapes) written back as their bytes."""
    return text.encode("utf-8", "surrogateescape")


def display_name(text: str) -> str:
    """``text`` for a figure or a page: bytes that are not UTF-8 shown as U+FFFD (matplotlib cannot
    draw the surrogate escapes Python gives such file names)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync it, then rename into place. A
    write that fails (disk full, read-only folder) is one line naming the file; the old file stays."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp's 0600 -> what open() would give (0644 under umask 022)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_UMASK_LOCK = threading.Lock()


def process_umask() -> int:
    """The process's umask now: the kernel's record of it where there is one (Linux), else by
    setting it and back under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        with _UMASK_LOCK:
            umask = os.umask(0o022)
            os.umask(umask)
            return umask


def _write_error(path: Path, exc: OSError) -> TransferkitError:
    why = exc.strerror or type(exc).__name__
    return TransferkitError(
        f"{path}: cannot write it ({why}); free some disk space or choose a writable folder; the file was left as it was"
    )


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Checksums:
    """``folder/checksums.json``: file name -> sha256 (plus ``pending`` while a file is replaced)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / CHECKSUMS_FILE

    def read(self) -> dict[str, dict[str, str]]:
        if not self.path.is_file():
            return {"sha256": {}, "pending": {}}
        try:
            record = json.loads(self.path.read_bytes())
            if not isinstance(record, dict) or not isinstance(record.get("sha256"), dict):
                raise ValueError("no sha256 table")
        except (OSError, ValueError) as exc:
            raise CorruptFileError(
                f"{self.path}: unreadable ({type(exc).__name__}: {exc}); it holds the sha256 of the files beside it:"
                " restore it, or delete it to use those files unverified"
            ) from None
        record.setdefault("pending", {})
        return record

    def _write(self, record: dict[str, dict[str, str]]) -> None:
        record = {"format": "transferkit.checksums", "algorithm": "sha256", "sha256": dict(sorted(record["sha256"].items())),
                  "pending": dict(sorted(record["pending"].items()))}
        text = json.dumps(record, indent=2) + "\n"
        atomic_write(self.path, lambda fh: fh.write(text.encode()))

    def accepted(self, name: str) -> set[str] | None:
        """The digests ``name`` may have, or None when it was never recorded."""
        record = self.read()
        found = {d for d in (record["sha256"].get(name), record["pending"].get(name)) if d}
        return found or None

    def write(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` (in this folder) atomically, recording its sha256."""
        digest, name = sha256_of(data), Path(path).name
        record = self.read()
        record["pending"][name] = digest
        self._write(record)
        atomic_write(path, lambda fh: fh.write(data))
        record["sha256"][name] = digest
        record["pending"].pop(name, None)
        self._write(record)

    def forget(self, name: str) -> None:
        """Drop a deleted file's record."""
        record = self.read()
        if name in record["sha256"] or name in record["pending"]:
            record["sha256"].pop(name, None)
            record["pending"].pop(name, None)
            self._write(record)

    def verify(self, path: Path, data: bytes) -> None:
        accepted = self.accepted(Path(path).name)
        if accepted is not None and sha256_of(data) not in accepted:
            raise CorruptFileError(
                f"{path}: its sha256 differs from the one recorded when it was written ({self.path}): the file is"
                " corrupt or was changed; restore it from a copy, or train again (nothing was read from it)"
            )


def write_verified(path: str | Path, data: bytes) -> Path:
    """Write ``data`` atomically and record its sha256 in ``checksums.json`` beside it."""
    path = Path(path)
    Checksums(path.parent).write(path, data)
    return path


def read_verified(path: str | Path) -> bytes:
    """The bytes of ``path``, checked against the sha256 recorded when it was written (when one was)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptFileError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    Checksums(path.parent).verify(path, data)
    return data


def read_verified_json(path: str | Path) -> Any:
    """A verified JSON file; one that does not parse is one line naming it."""
    data = read_verified(path)
    try:
        return json.loads(data.decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        raise CorruptFileError(f"{path}: not valid JSON ({exc}); the file is damaged: restore it, or train again") from None


def remove_verified(path: str | Path) -> None:
    """Delete a file written by ``write_verified`` and its record."""
    path = Path(path)
    path.unlink(missing_ok=True)
    Checksums(path.parent).forget(path.name)


def stale_temp_files(folder: str | Path) -> list[Path]:
    """Temp files ``atomic_write`` left in ``folder`` when its process died mid-write."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and TEMP_PATTERN.match(p.name))
