"""Decode every image file once, before training: bad files are found up front (all of them, by
name), and the good ones are kept in memory as uint8 at the working resolution, so no JPEG is
decoded again in any epoch. Same bytes in two splits are reported as possible leakage."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import BadFilesError, DataError
from ..progress import progress
from .image_files import read_image_bytes
from .sources import DatasetSplits, FileImages, ImageSet, SubsetImages, decode_image_bytes

SPLITS = ("train", "val", "test")
# the longest side kept, in multiples of the shortest: evaluation enlarges the shortest side to
# its resize, so a 1 x 200000 image would become 219 x 44 million pixels (159 s, 5.7 GB); beyond
# this ratio the centre is cut out first (the centre crop only ever uses the middle)
MAX_ASPECT = 16


class DecodedImages(ImageSet):
    """Images decoded once and kept as uint8 arrays (shorter side at most ``shorter``)."""

    def __init__(self, arrays: list[np.ndarray], targets: Sequence[int], classes: Sequence[str], names: Sequence[str]) -> None:
        self.arrays, self.targets, self.classes, self.names = arrays, list(targets), list(classes), list(names)

    def load(self, index: int) -> np.ndarray:
        return self.arrays[index]

    def describe(self, index: int) -> str:
        return self.names[index]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)


@dataclass
class DecodeReport:
    """What the decoding pass found."""

    bad: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    leaks: dict[str, int] = field(default_factory=dict)  # "train/test" -> files with identical bytes
    leak_examples: list[str] = field(default_factory=list)
    decoded_mb: float = 0.0
    kept_in_memory: bool = False
    seconds: float = 0.0


def bound_aspect(image: np.ndarray, max_aspect: int = MAX_ASPECT) -> np.ndarray:
    """The centre of an image whose long side exceeds ``max_aspect`` times its short side, cut to
    that ratio (a view, no copy); other images as they are. Bounds what any later resize costs."""
    h, w = image.shape[:2]
    short = max(min(h, w), 1)
    if max(h, w) <= max_aspect * short:
        return image
    keep = max_aspect * short
    if h > w:
        top = (h - keep) // 2
        return image[top : top + keep]
    left = (w - keep) // 2
    return image[:, left : left + keep]


def resize_shorter(image: np.ndarray, shorter: int | None) -> np.ndarray:
    """Shrink so the shorter side is ``shorter`` (antialiased bicubic, as PIL does); never enlarge.
    Training decodes with it, and inference (``transferkit.inference``) resizes with it too, so a
    finished run's predictions equal the ones measured during training. Extreme aspect ratios are
    cut to ``MAX_ASPECT`` first (``bound_aspect``), so no image costs more than a normal one later."""
    image = bound_aspect(image)
    if shorter is None or min(image.shape[:2]) <= shorter:
        return image
    h, w = image.shape[:2]
    scale = shorter / min(h, w)
    size = (max(shorter, round(w * scale)), max(shorter, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))


def _decode(path: Path, shorter: int | None) -> tuple[np.ndarray | None, str, str]:
    """(array or None, reason if bad, sha1 of the bytes)."""
    try:
        data = read_image_bytes(path)  # a regular file only, bounded: a FIFO or /dev/zero is one reason
    except DataError as exc:
        return None, bad_image_reason(exc, path), ""
    digest = hashlib.sha1(data).hexdigest()
    if not data:
        return None, "empty file (0 bytes)", digest
    try:
        return resize_shorter(decode_image_bytes(data, path), shorter), "", digest
    except Exception as exc:  # noqa: BLE001 - every way a file can fail to decode is one reason
        return None, bad_image_reason(exc, path), digest


def bad_image_reason(exc: BaseException, path: Path | str | None = None) -> str:
    """Why an image file could not be decoded, in a few words (``read_image``'s errors)."""
    if isinstance(exc, DataError):
        text = str(exc)
        prefix = f"{path}: "
        return text[len(prefix):] if path is not None and text.startswith(prefix) else text
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image"
    if isinstance(exc, (OSError, SyntaxError, ValueError)):
        return "truncated" if "truncated" in str(exc).lower() else f"cannot decode ({exc})"
    return f"cannot decode ({type(exc).__name__}: {exc})"


def decode_file(path: str | Path, shorter: int | None = None) -> tuple[np.ndarray | None, str]:
    """One file as the decoding pass reads it: the array (shrunk to ``shorter``), or None and why not."""
    array, reason, _ = _decode(Path(path), shorter)
    return array, reason


def _files(images: ImageSet) -> tuple[FileImages, list[int]] | None:
    """The files behind a set (a FileImages or a subset of one), with their indices."""
    if isinstance(images, FileImages):
        return images, list(range(len(images)))
    if isinstance(images, SubsetImages) and isinstance(images.base, FileImages):
        return images.base, images.indices
    return None


def decode_splits(
    splits: DatasetSplits, *, shorter: int | None, on_bad: str, budget_mb: float, workers: int = 4
) -> tuple[DatasetSplits, DecodeReport]:
    """Decode every file of every split; raise (``on_bad="error"``) naming all bad files, or
    drop them (``"skip"``). Keep the decoded arrays when they fit ``budget_mb``: the moment they
    stop fitting, those kept so far are let go and the pass goes on checking the files alone, so
    its memory never exceeds the budget (it held every array until the end before)."""
    report = DecodeReport()
    started = time.perf_counter()
    decoded: dict[str, tuple[list, list[int], list[str], list[str]]] = {}
    hashes: dict[str, set[str]] = {}
    jobs = {name: _files(getattr(splits, name)) for name in SPLITS if getattr(splits, name) is not None}
    if not jobs or any(job is None for job in jobs.values()):
        return splits, report  # in-memory or user datasets: nothing to decode
    total = sum(len(idx) for _, idx in jobs.values())
    total_bytes, keeping = 0, True
    with ThreadPoolExecutor(max_workers=workers) as pool, progress(total=total, desc="decoding images", unit="image") as bar:
        for name, (files, indices) in jobs.items():
            arrays, targets, names, digests = [], [], [], set()
            paths = [files.paths[i] for i in indices]
            for i, path, (array, reason, digest) in zip(indices, paths, pool.map(lambda p: _decode(p, shorter), paths)):
                bar.update(1)
                if digest:
                    digests.add(digest)
                if array is None:
                    report.bad.append((str(path), reason))
                    continue
                total_bytes += array.nbytes
                if keeping and total_bytes > budget_mb * 2**20:
                    keeping = False  # over the budget: keep none (the epochs read the files instead)
                    arrays.clear()
                    for kept, *_ in decoded.values():
                        kept.clear()
                if keeping:
                    arrays.append(array)
                targets.append(files.targets[i])
                names.append(str(path))
            decoded[name] = (arrays, targets, names, list(files.classes))
            hashes[name] = digests
    if report.bad and on_bad == "error":
        raise BadFilesError(report.bad, 'fix or remove them, or set data.on_bad_image = "skip"')
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        common = hashes.get(a, set()) & hashes.get(b, set())
        if common:
            report.leaks[f"{a}/{b}"] = len(common)
    report.seconds = time.perf_counter() - started
    report.decoded_mb = total_bytes / 2**20
    for name, (arrays, targets, names, classes) in decoded.items():
        if not targets:
            raise DataError(f"the {name} split has no readable images left after skipping bad files")
    if not keeping:
        return _without_bad(splits, report), report
    report.kept_in_memory = True
    out = {name: DecodedImages(*decoded[name][:2], decoded[name][3], decoded[name][2]) for name in decoded}
    return DatasetSplits(out["train"], out.get("val"), out.get("test")), report


def _without_bad(splits: DatasetSplits, report: DecodeReport) -> DatasetSplits:
    """Over the memory budget: keep decoding from disk each epoch, minus the bad files."""
    bad = {p for p, _ in report.bad}
    parts = {}
    for name in SPLITS:
        images = getattr(splits, name)
        if images is None:
            parts[name] = None
            continue
        keep = [i for i in range(len(images)) if images.describe(i) not in bad]
        parts[name] = images if len(keep) == len(images) else images.subset(keep)
    return DatasetSplits(parts["train"], parts["val"], parts["test"])
