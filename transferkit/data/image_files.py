"""Reading an image file's bytes: only a regular file, only up to a size limit.

A FIFO named by a CSV row would block ``open`` forever with nothing printed, and ``/dev/zero``
would read without end; a file that grows while it is read could too. So a file is opened
non-blocking, checked with ``fstat`` on the open descriptor (no race between the check and the
read), and read to at most ``MAX_IMAGE_FILE_BYTES``. A link to a regular file is fine: the user's
data may well be linked in; what it points at is what is checked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import DataError

# far above any image Pillow decodes under its pixel limit (89 Mpx of 16-bit RGBA is ~715 MB)
MAX_IMAGE_FILE_BYTES = 1 << 30
_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def not_regular(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file (None when it is)."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def read_image_bytes(path: str | Path, limit: int = MAX_IMAGE_FILE_BYTES) -> bytes:
    """The bytes of an image file; a ``DataError`` naming it when it is not a regular file, is
    over ``limit`` bytes, or cannot be read."""
    return read_regular_file(path, limit, "image file")


def read_regular_file(path: str | Path, limit: int, what: str) -> bytes:
    """The bytes of ``path`` (a ``what``, e.g. "CSV file", in errors) when it is a regular file of
    at most ``limit`` bytes; otherwise a one-line ``DataError`` naming it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO opens at once, without a writer
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        kind = not_regular(st.st_mode)
        if kind:
            raise DataError(f"{path}: {kind}, not a regular {what}")
        if st.st_size > limit:
            raise DataError(f"{path}: {st.st_size:,} bytes, over the {limit:,}-byte limit for one {what}")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise DataError(f"{path}: grew past the {limit:,}-byte limit for one {what} while it was read")
        return b"".join(chunks)
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror})") from None
    finally:
        os.close(fd)


def byte_copies(files: list[Path], originals: list[Path]) -> set[Path]:
    """The ``files`` whose bytes equal one of ``originals``' (compared by size, then SHA-1; a file
    that cannot be read is no copy)."""
    import hashlib

    def digest(path: Path) -> str:
        try:
            return hashlib.sha1(path.read_bytes()).hexdigest()
        except OSError:
            return ""

    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return -1

    by_size: dict[int, list[Path]] = {}
    for path in originals:
        by_size.setdefault(size(path), []).append(path)
    maybe = [f for f in files if size(f) in by_size and size(f) >= 0]  # only a file of the same size can be a copy
    digests = {digest(p) for s in {size(f) for f in maybe} for p in by_size[s]} - {""}
    return {f for f in maybe if digest(f) in digests}
