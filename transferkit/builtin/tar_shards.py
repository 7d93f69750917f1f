"""The ``webdataset`` data source: images in uncompressed tar shards, WebDataset's layout, streamed.

Layout (``data.root``)::

    root/classes.txt          optional: class names, one a line (line 1 is class 0)
    root/train/*.tar          required (or root/*.tar: one pool, split like imagefolder's one folder)
    root/val/*.tar            optional (also valid/ or validation/): else held out of train
    root/test/*.tar           optional

In a shard, a sample is the consecutive members sharing a key (``000123.jpg`` + ``000123.cls``).
Its image is the member with an image extension (jpg, jpeg, png, bmp, gif, tif, tiff, webp; the
first one when there are several); its label is the member whose extension is
``data.params.label``: ``cls`` (the default) holds a class index, an integer, into
``classes.txt``, or without that file the classes are the indices found (named "0", "1"...,
numerically sorted); any other extension (``txt``, ``class``...) holds a class name (UTF-8 text),
which must be in ``classes.txt`` when there is one, else the classes are the names found, sorted.
Members of other keys or extensions (``.json``...) are left alone.

Every shard is indexed when the source is built (headers only: see ``data.tar_shards``), so a bad
shard stops the run before training, in one line naming it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..data.image_files import read_regular_file
from ..data.sources import DatasetSplits, ImageSet, capped, stratified_split
from ..data.tar_shards import IMAGE_EXTS, ShardIndex, TarShardImages, index_shards
from ..errors import DataError

TRAIN_DIRS, EVAL_DIRS, TEST_DIRS = ("train",), ("val", "valid", "validation"), ("test",)
CLASSES_FILE = "classes.txt"
COMPRESSED_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst")
LAYOUT = "{root}/train/*.tar (and optionally val/*.tar, test/*.tar, classes.txt) or {root}/*.tar"
INTEGER = re.compile(r"^[+-]?\d+$")


def shards_in(folder: Path) -> list[Path]:
    """The ``.tar`` files of ``folder`` (not its subfolders), sorted by name; hidden files left out.
    Compressed shards are refused, naming one."""
    files = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
    compressed = [p for p in files if p.name.lower().endswith(COMPRESSED_SUFFIXES)]
    if compressed:
        raise DataError(f"{compressed[0]}: a compressed shard ({len(compressed)} in {folder}); the webdataset source reads"
                        " uncompressed .tar shards (it seeks to each image): uncompress them (e.g. gunzip)")
    return [p for p in files if p.name.lower().endswith(".tar")]


def _find(base: Path, names: tuple[str, ...]) -> Path | None:
    return next((base / n for n in names if (base / n).is_dir()), None)


def find_shards(base: Path) -> dict[str, list[Path]]:
    """The shards of each split folder present (``train``, ``val``, ``test``), or ``{"all": ...}``
    for shards directly in ``base``."""
    train = _find(base, TRAIN_DIRS)
    folders = {"train": train, "val": _find(base, EVAL_DIRS), "test": _find(base, TEST_DIRS)} if train else {"all": base}
    found = {}
    for split, folder in folders.items():
        if folder is None:
            continue
        found[split] = shards_in(folder)
        if not found[split]:
            raise DataError(f"{folder}: no .tar shards; the webdataset source expects {LAYOUT.format(root=base)}")
    return found


def read_classes(path: Path) -> list[str]:
    """``classes.txt``: one class name a line (line 1 is class 0); blank lines at the end ignored."""
    try:
        lines = read_regular_file(path, 64 << 20, "class list").decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save it as UTF-8, one class name a line") from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    blank = [n for n, name in enumerate(names, start=1) if not name]
    if blank:
        raise DataError(f"{path}: line {blank[0]} is empty; one class name a line (line 1 is class 0)")
    seen: dict[str, int] = {}
    for n, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(f"{path}: class {name!r} is on lines {seen[name]} and {n}; name each class once")
        seen[name] = n
    if not names:
        raise DataError(f"{path}: no class names; write one a line (line 1 is class 0), or remove the file")
    return names


class Labels:
    """Label members' text to class indices, across every split (so all splits share the classes).
    While indexing, a label becomes a provisional int; ``classes`` and ``remap`` make them final
    once every shard is read."""

    def __init__(self, ext: str, classes: list[str] | None, classes_file: Path) -> None:
        self.ext, self.given, self.file = ext, classes, classes_file
        self.names = {name: i for i, name in enumerate(classes or [])}
        self.seen: set[int] = set()

    def __call__(self, text: str, where: str) -> int:
        if self.ext == "cls":
            if not INTEGER.match(text):
                raise DataError(f"{where}: {text[:40]!r} is not a class index; a .cls member holds an integer (for class"
                                " names in .txt members set data.params.label = \"txt\")")
            value = int(text)
            if self.given is not None and not 0 <= value < len(self.given):
                raise DataError(f"{where}: label {value} is not in {self.file} ({len(self.given)} classes: 0 to"
                                f" {len(self.given) - 1}); fix the label or add the class to {self.file.name}")
            if value < 0:
                raise DataError(f"{where}: label {value}; a class index is 0 or more")
            self.seen.add(value)
            return value
        if not text:
            raise DataError(f"{where}: an empty label; the member holds the sample's class name")
        if text not in self.names:
            if self.given is not None:
                raise DataError(f"{where}: label {text[:60]!r} is not in {self.file} ({capped(self.given)}); fix the label"
                                f" or add the class to {self.file.name}")
            self.names[text] = len(self.names)
        return self.names[text]

    def classes(self) -> list[str]:
        if self.given is not None:
            return list(self.given)
        if self.ext == "cls":
            return [str(v) for v in sorted(self.seen)]
        return sorted(self.names)

    def remap(self, labels: np.ndarray) -> np.ndarray:
        """Provisional labels to indices into ``classes()``."""
        if self.given is not None:
            return labels
        if self.ext == "cls":
            return np.searchsorted(np.asarray(sorted(self.seen), dtype=np.int64), labels)
        order = np.zeros(max(len(self.names), 1), dtype=np.int64)
        for rank, name in enumerate(sorted(self.names)):
            order[self.names[name]] = rank
        return order[labels] if len(labels) else labels


def webdataset(root: str | None, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
               label: str = "cls") -> DatasetSplits:
    """Tar shards in WebDataset's layout (see the module's docstring), indexed by their headers and
    read image by image each epoch. Without ``val/``, ``val_fraction`` of train is held out,
    stratified and seeded; shards directly in ``root``: ``test_fraction``, then ``val_fraction``
    of the rest (as the imagefolder source does with one folder)."""
    if root is None:
        raise DataError(f"data.root: the webdataset source needs the folder of the shards ({LAYOUT.format(root='root')})")
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"data.root: {base} is not a folder; the webdataset source expects {LAYOUT.format(root=base)}")
    ext = label.strip().lstrip(".").lower()
    if not ext or ext in IMAGE_EXTS:
        raise DataError(f"data.params.label: {label!r} is not a label member's extension; use \"cls\" (a class index) or"
                        " \"txt\" (a class name), the extension of the member that holds each sample's class")
    shards = find_shards(base)
    classes_file = base / CLASSES_FILE
    labels = Labels(ext, read_classes(classes_file) if classes_file.is_file() else None, classes_file)
    indices: dict[str, ShardIndex] = {split: index_shards(paths, ext, labels) for split, paths in shards.items()}
    classes, notes = labels.classes(), []
    for index in indices.values():
        notes += [f"{shard}: left out {n} member(s) of no sample (no image and no .{ext} label, or a hidden name)"
                  for shard, n in index.skipped.items()]
    parts: dict[str, ImageSet] = {split: TarShardImages(index, labels.remap(index.labels), classes) for split, index in indices.items()}
    empty = next((split for split, images in parts.items() if not len(images)), None)
    if empty:
        raise DataError(f"{base}: the {empty} shards ({capped([p.name for p in shards[empty]], 3)}) hold no sample (an image"
                        f" and a .{ext} label sharing a key, e.g. 000123.jpg + 000123.{ext}); check the shards or data.params.label")
    if "all" in parts:
        train, test = stratified_split(parts["all"], test_fraction, seed, notes, "test")
        train, val = stratified_split(train, val_fraction, seed, notes, "validation")
        return DatasetSplits(train, val, test, notes=notes)
    train, val = parts["train"], parts.get("val")
    if val is None:
        train, val = stratified_split(train, val_fraction, seed, notes, "validation")
    return DatasetSplits(train, val, parts.get("test"), notes=notes)
