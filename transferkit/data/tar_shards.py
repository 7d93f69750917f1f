"""Images in tar shards (WebDataset's layout), indexed by their headers and read on demand.

A shard is an uncompressed POSIX tar; a sample is the consecutive members that share a key (the
member's name up to the first dot of its file name: ``000123.jpg`` and ``000123.cls``). Indexing
reads the headers only (``tarfile`` seeks past each member's data in an uncompressed tar) and the
small label members; what is kept per sample is a shard number, a byte offset, a size, a label
and the image member's name, packed in arrays: memory grows with the number of samples, never
with the images' bytes. ``TarShardImages.load`` opens the shard (one handle per shard per process,
opened lazily: DataLoader workers open their own), reads the member's bytes at its offset and
decodes them.

A bad shard is a ``DataError`` naming it, raised while indexing: compressed, not a tar, truncated,
a sample with an image and no label. An image that cannot be decoded is found only when it is read.
"""

from __future__ import annotations

import os
import posixpath
import re
import tarfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DataError
from ..progress import progress
from .image_files import MAX_IMAGE_FILE_BYTES, not_regular
from .sources import IMAGE_EXTENSIONS, UNSUPPORTED_FORMATS, ImageSet, decode_image_bytes

IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)
MAX_LABEL_BYTES = 1024  # a class index or name; more is a caption or a mistake
MAX_OPEN_SHARDS = 64  # file handles each process keeps open (least recently used closed first)
COMPRESSED = (  # magic bytes of what a .tar shard may be instead of an uncompressed tar
    (b"\x1f\x8b", "gzip-compressed", "gunzip"), (b"BZh", "bzip2-compressed", "bunzip2"),
    (b"\xfd7zXZ\x00", "xz-compressed", "unxz"), (b"\x28\xb5\x2f\xfd", "zstd-compressed", "unzstd"),
)

SHARD_ITEM = re.compile(r"^(.+?\.tar):(.+)$", re.IGNORECASE)  # TarShardImages.describe: "shard.tar:member"


def is_shard_item(described: str) -> bool:
    """Whether ``described`` names a member of an existing tar shard (``TarShardImages.describe``)."""
    match = SHARD_ITEM.match(described)
    return match is not None and Path(match.group(1)).is_file()


def split_key(name: str) -> tuple[str, str] | None:
    """(key, extension) of a member name as WebDataset splits it (``dir/000123.seg.png`` ->
    ``dir/000123``, ``seg.png``); None for a hidden file (``._x.jpg``) or a name without a dot."""
    folder, base = posixpath.split(name)
    if base.startswith(".") or "." not in base:
        return None
    stem, ext = base.split(".", 1)
    return posixpath.join(folder, stem), ext.lower()


def compression_of(head: bytes) -> tuple[str, str] | None:
    """(what, the command that undoes it) when ``head`` starts a compressed file."""
    return next(((what, tool) for magic, what, tool in COMPRESSED if head.startswith(magic)), None)


class PackedNames:
    """Many short strings in one bytes buffer and an array of end offsets (no object per string)."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        encoded = [n.encode("utf-8", "surrogateescape") for n in names]
        self.blob = b"".join(encoded)
        self.ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, index: int) -> str:
        start = int(self.ends[index - 1]) if index > 0 else 0
        return self.blob[start : int(self.ends[index])].decode("utf-8", "surrogateescape")


@dataclass
class ShardIndex:
    """Where each sample's image is: its shard (into ``shards``), data offset, size and member name,
    and its label as ``label_of`` gave it."""

    shards: list[str]
    shard: np.ndarray  # int32
    offset: np.ndarray  # int64
    size: np.ndarray  # int64
    labels: np.ndarray  # int64
    names: PackedNames
    skipped: dict[str, int] = field(default_factory=dict)  # shard -> members that belong to no sample


def index_shards(paths: Sequence[str | Path], label_ext: str, label_of: Callable[[str, str], int]) -> ShardIndex:
    """Index every shard of ``paths`` (see ``index_shard``), in order."""
    shard, offset, size, labels, names, skipped = [], [], [], [], [], {}
    for number, path in enumerate(progress(paths, desc="indexing tar shards", unit="shard")):
        samples, left_out = index_shard(path, label_ext, label_of)
        if left_out:
            skipped[str(path)] = left_out
        shard.append(np.full(len(samples), number, dtype=np.int32))
        offset.append(np.array([s[1] for s in samples], dtype=np.int64))
        size.append(np.array([s[2] for s in samples], dtype=np.int64))
        labels.append(np.array([s[3] for s in samples], dtype=np.int64))
        names += [s[0] for s in samples]

    def joined(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    return ShardIndex([str(p) for p in paths], joined(shard, np.int32), joined(offset, np.int64), joined(size, np.int64),
                      joined(labels, np.int64), PackedNames(names), skipped)


def index_shard(path: str | Path, label_ext: str, label_of: Callable[[str, str], int]) -> tuple[list[tuple[str, int, int, int]], int]:
    """The samples of one shard, ``(image member, data offset, size, label)`` each, and how many
    members belong to no sample (hidden names, names without an extension, samples of neither
    image nor label). ``label_of(text, where)`` turns a label member's text into an int (or raises
    a ``DataError``). Only the headers and the label members are read."""
    path = Path(path)
    try:
        st = os.stat(path)
        kind = not_regular(st.st_mode)
        if kind:
            raise DataError(f"{path}: {kind}, not a tar shard; move it out of {path.parent}")
        with open(path, "rb") as fh:
            found = compression_of(fh.read(6))
            if found:
                what, tool = found
                raise DataError(f"{path}: {what}; the webdataset source reads uncompressed tar shards (it seeks to each image):"
                                f" uncompress it ({tool})")
            fh.seek(0)
            return _scan(path, fh, st.st_size, label_ext, label_of)
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from None


def _scan(path: Path, fh: Any, file_size: int, label_ext: str, label_of: Callable[[str, str], int]) -> tuple[list, int]:
    try:
        tar = tarfile.open(fileobj=fh, mode="r:")
    except tarfile.ReadError as exc:
        raise DataError(f"{path}: not a tar file ({exc}); write the shard as an uncompressed POSIX tar, or move it out of"
                        f" {path.parent}") from None
    samples: list[tuple[str, int, int, int]] = []
    skipped, group, key, end, last = 0, [], None, 0, "its first member"

    def close_sample() -> None:
        nonlocal skipped
        if group:
            sample = _sample(path, key, group, tar, label_ext, label_of)
            if sample is None:
                skipped += len(group)
            else:
                samples.append(sample)

    try:
        while (info := tar.next()) is not None:
            tar.members.clear()  # tarfile keeps every header read; the index keeps its own
            end = info.offset_data + (info.size if info.isreg() else 0)
            last = info.name
            if end > file_size:
                raise tarfile.ReadError("unexpected end of data")
            if not info.isreg():
                continue  # folders, links: not part of any sample
            parts = split_key(info.name)
            if parts is None:
                skipped += 1
                continue
            if parts[0] != key:
                close_sample()
                group, key = [], parts[0]
            group.append((parts[1], info))
    except (tarfile.ReadError, tarfile.HeaderError) as exc:
        raise DataError(f"{path}: truncated or corrupt after {last!r} ({exc}); copy or write the shard again") from None
    _check_end(path, fh, tar.offset, file_size, last)  # before the last sample: a cut shard may have cut its label off
    close_sample()
    return samples, skipped


def _check_end(path: Path, fh: Any, offset: int, file_size: int, last: str) -> None:
    """After the last member come zero blocks (at least two, the end-of-archive marker): anything
    else is a shard cut short inside a header, or one written by a writer that never finished."""
    tail = file_size - offset
    fh.seek(offset)
    if fh.read(min(tail, 1 << 20)).strip(b"\0"):
        raise DataError(f"{path}: truncated or corrupt after {last!r} (the bytes after it are neither a member nor the"
                        " end-of-archive marker: a header cut short, or two tars joined); copy or write the shard again")
    if tail < 2 * tarfile.BLOCKSIZE:
        raise DataError(f"{path}: truncated after {last!r} (no end-of-archive marker); copy or write the shard again")


def _sample(path: Path, key: str | None, group: list, tar: tarfile.TarFile, label_ext: str,
            label_of: Callable[[str, str], int]) -> tuple[str, int, int, int] | None:
    """(image member, offset, size, label) of one key's members, None when it has neither an
    image nor a label (other files: metadata, captions...); a ``DataError`` when it has one only."""
    image = next((info for ext, info in group if ext in IMAGE_EXTS), None)
    label = next((info for ext, info in group if ext == label_ext), None)
    members = ", ".join(info.name for _, info in group[:4]) + (", ..." if len(group) > 4 else "")
    if image is None and label is None:
        return None
    if label is None:
        raise DataError(f"{path}: sample {key!r} has an image ({image.name}) but no .{label_ext} label; add {key}.{label_ext}"
                        " or remove the sample from the shard")
    if image is None:
        unsupported = next((f"; {info.name}: {UNSUPPORTED_FORMATS['.' + ext.rsplit('.', 1)[-1]]}" for ext, info in group
                            if "." + ext.rsplit(".", 1)[-1] in UNSUPPORTED_FORMATS), "")
        raise DataError(f"{path}: sample {key!r} has a label and no image ({members}; images are"
                        f" {', '.join(IMAGE_EXTS)}){unsupported}; add the image or remove the sample")
    if label.size > MAX_LABEL_BYTES:
        raise DataError(f"{path}: {label.name}: {label.size:,} bytes is not a class label; a .{label_ext} member holds one"
                        " class (set data.params.label to the extension of the member that does)")
    if image.size == 0 or image.size > MAX_IMAGE_FILE_BYTES:
        raise DataError(f"{path}: {image.name}: {image.size:,} bytes is not an image; fix or remove the sample")
    reader = tar.extractfile(label)
    text = reader.read().decode("utf-8", "replace").strip() if reader is not None else ""
    return image.name, image.offset_data, image.size, label_of(text, f"{path}: {label.name}")


class TarShardImages(ImageSet):
    """Samples of tar shards (a ``ShardIndex``) read on demand: ``load`` reads one image member's
    bytes at its offset and decodes them. Picklable (for DataLoader workers): the open shards are
    not part of the pickled state, and each process opens its own."""

    def __init__(self, index: ShardIndex, targets: Sequence[int], classes: Sequence[str]) -> None:
        self.index = index
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)
        self._pid, self._open = os.getpid(), OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pid"], state["_open"] = None, OrderedDict()
        return state

    def describe(self, index: int) -> str:
        return f"{self.index.shards[self.index.shard[index]]}:{self.index.names[index]}"

    def read_bytes(self, index: int) -> bytes:
        """The image member's bytes, as stored in the shard."""
        size, offset = int(self.index.size[index]), int(self.index.offset[index])
        try:
            fh = self._shard(int(self.index.shard[index]))
            if hasattr(os, "pread"):  # positional: no shared file offset to race on
                chunks, got = [], 0
                while got < size:
                    chunk = os.pread(fh.fileno(), size - got, offset + got)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    got += len(chunk)
                data = b"".join(chunks)
            else:
                fh.seek(offset)
                data = fh.read(size)
        except OSError as exc:
            raise DataError(f"{self.describe(index)}: unreadable ({exc.strerror or exc})") from None
        if len(data) != size:
            raise DataError(f"{self.describe(index)}: the shard ends {size - len(data):,} bytes into this image (truncated"
                            " since it was indexed); copy or write the shard again")
        return data

    def load(self, index: int) -> np.ndarray:
        where = self.describe(index)
        data = self.read_bytes(index)
        try:
            return decode_image_bytes(data, where)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - every way an image fails to decode is one line naming it
            from .decoding import bad_image_reason

            raise DataError(f"{where}: {bad_image_reason(exc)}; fix or remove this sample from the shard") from None

    def _shard(self, number: int) -> Any:
        """The shard's file, opened once per process (a forked worker opens its own)."""
        if self._pid != os.getpid():
            self._pid, self._open = os.getpid(), OrderedDict()
        fh = self._open.get(number)
        if fh is None:
            fh = open(self.index.shards[number], "rb", buffering=0)  # noqa: SIM115 - kept open, closed when evicted
            self._open[number] = fh
            if len(self._open) > MAX_OPEN_SHARDS:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(number)
        return fh

    def close(self) -> None:
        """Close the shards this process has open."""
        while self._open:
            self._open.popitem()[1].close()
