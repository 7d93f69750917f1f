"""The files a run writes: written atomically, their sha256 recorded, and verified on every read.

Every folder that holds a run's files (the run directory, its ``checkpoints/``, a snapshot, an
averaged model folder) keeps ``checksums.json``: the sha256 of each file written into it through
``write_verified``. ``read_verified`` checks the bytes it returns against that record, so a flipped
bit in a checkpoint, a model or a manifest is one line naming the file (exit 2) instead of silently
different weights or labels; nothing is read from such a file, so nothing is written from it.

A crash can come between writing a file and recording its checksum, so the record is two-phase:
before the new file is renamed into place its digest is recorded as ``pending`` (the old and the
new content are both accepted), and after the rename it becomes the only one. Writers hold the
folder's lock (``folder_lock``) around both, and a reader re-checks a mismatch under it, so an intact
file is never called corrupt because another process was mid-write.

A folder without ``checksums.json`` (a run from before checksums, or a deleted record) is read
unverified with a one-line notice on stderr; in a folder that has the record, a file without an
entry is refused, unless it was there, unrecorded, when the record was started.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from ...errors import CorruptFileError, TransferkitError

CHECKSUMS_FILE = "checksums.json"
TEMP_SUFFIX = ".tmp"  # atomic_write's temp files: ".<name>.<8 random characters>.tmp" (own_files removes stale ones)


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
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some disk space or choose a writable folder"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose a writable folder"
    else:  # e.g. its temp file removed by another process: not a matter of disk space
        fix = "try again; if it persists, check what else writes into that folder"
    return TransferkitError(f"{path}: cannot write it ({why}); {fix}; the file was left as it was")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_held = threading.local()  # the folders this thread holds locked (flock is per open file: re-taking one would wait on itself)


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, shared: bool = False) -> Iterator[None]:
    """Hold ``flock`` on ``folder`` itself: exclusive while a file and its record are written
    (``Checksums.write``), shared while a reader re-checks a file against its record, so no
    writer's update of ``checksums.json`` is lost to another's and no reader sees a file between
    its rename and its record. A folder that does not exist needs no lock."""
    held: set[str] = _held.__dict__.setdefault("folders", set())
    key = os.path.realpath(folder)
    if key in held or not os.path.isdir(key):
        yield
        return
    fd = os.open(key, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except OSError:  # a file system without flock (some network mounts): as before locks existed
            pass
        held.add(key)
        yield
    finally:
        held.discard(key)
        os.close(fd)  # drops the lock


_noticed: set[str] = set()


def _notice_unverified(path: Path, why: str) -> None:
    """One line per folder (per process): a file read without a record to check it against."""
    folder = os.path.abspath(path.parent)
    if folder not in _noticed:
        _noticed.add(folder)
        print(f"transferkit: read unverified: {path}: {why}", file=sys.stderr, flush=True)


class Checksums:
    """``folder/checksums.json``: file name -> sha256 (plus ``pending`` while a file is replaced,
    and ``unverified``: the files already in the folder, unrecorded, when the record was started)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / CHECKSUMS_FILE

    def exists(self) -> bool:
        return os.path.lexists(self.path)

    def read(self) -> dict[str, Any]:
        if not self.exists():
            return {"sha256": {}, "pending": {}, "unverified": []}
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
        record.setdefault("unverified", [])
        return record

    def _write(self, record: dict[str, Any]) -> None:
        record = {"format": "transferkit.checksums", "algorithm": "sha256", "sha256": dict(sorted(record["sha256"].items())),
                  "pending": dict(sorted(record["pending"].items())),
                  **({"unverified": sorted(record["unverified"])} if record.get("unverified") else {})}
        text = json.dumps(record, indent=2) + "\n"
        atomic_write(self.path, lambda fh: fh.write(text.encode()))

    def _started(self) -> dict[str, Any]:
        """The record, or a new one naming the files already here (a run from before checksums,
        continued): those stay readable unverified; any other file without an entry is refused."""
        if self.exists():
            return self.read()
        present = [p.name for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".")] if self.folder.is_dir() else []
        return {"sha256": {}, "pending": {}, "unverified": present}

    def accepted(self, name: str) -> set[str] | None:
        """The digests ``name`` may have, or None when it was never recorded."""
        record = self.read()
        found = {d for d in (record["sha256"].get(name), record["pending"].get(name)) if d}
        return found or None

    def write(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` (in this folder) atomically, recording its sha256; the folder
        is locked meanwhile, so writers in other processes cannot lose each other's records."""
        digest, name = sha256_of(data), Path(path).name
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(Path(path), exc) from None
        with folder_lock(self.folder):
            record = self._started()
            record["pending"][name] = digest
            self._write(record)
            atomic_write(path, lambda fh: fh.write(data))
            record["sha256"][name] = digest
            record["pending"].pop(name, None)
            if name in record["unverified"]:
                record["unverified"].remove(name)
            self._write(record)

    def forget(self, name: str) -> None:
        """Drop a deleted file's record."""
        with folder_lock(self.folder):
            record = self.read()
            if name in record["sha256"] or name in record["pending"]:
                record["sha256"].pop(name, None)
                record["pending"].pop(name, None)
                self._write(record)

    def check(self, path: Path, data: bytes) -> str | None:
        """Why ``data`` is not what was recorded for ``path`` (None when it is, or is allowed
        unverified: a notice is printed)."""
        if not self.exists():
            _notice_unverified(path, f"no {CHECKSUMS_FILE} beside it (a run from before checksums, or the record was deleted)")
            return None
        record = self.read()
        name = Path(path).name
        accepted = {d for d in (record["sha256"].get(name), record["pending"].get(name)) if d}
        if not accepted:
            if name in record["unverified"]:
                _notice_unverified(path, f"written before {self.path} was started")
                return None
            return (f"{path}: has no entry in {self.path} although every file of the folder is recorded there: the record"
                    " was edited or the file put there by hand; restore both from a copy, or train again (nothing was read from it)")
        if sha256_of(data) not in accepted:
            return (f"{path}: its sha256 differs from the one recorded when it was written ({self.path}): the file is"
                    " corrupt or was changed; restore it from a copy, or train again (nothing was read from it)")
        return None

    def verify(self, path: Path, data: bytes) -> None:
        problem = self.check(path, data)
        if problem:
            raise CorruptFileError(problem)


def write_verified(path: str | Path, data: bytes) -> Path:
    """Write ``data`` atomically and record its sha256 in ``checksums.json`` beside it."""
    path = Path(path)
    Checksums(path.parent).write(path, data)
    return path


def read_verified(path: str | Path) -> bytes:
    """The bytes of ``path``, checked against the sha256 recorded when it was written. A mismatch
    is read again, file and record, under the folder's lock before the file is called corrupt: a
    writer in another process may have been between its rename and its record."""
    path = Path(path)
    checksums = Checksums(path.parent)
    data = _read(path)
    if checksums.check(path, data) is None:
        return data
    with folder_lock(path.parent, shared=True):
        data = _read(path)
        checksums.verify(path, data)
    return data


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CorruptFileError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None


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
    with folder_lock(path.parent):
        path.unlink(missing_ok=True)
        Checksums(path.parent).forget(path.name)

