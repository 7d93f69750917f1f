"""Writing an ImageFolder as tar shards the ``webdataset`` source reads (and WebDataset too)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from ..data.image_files import read_image_bytes
from ..data.sources import FileImages
from ..errors import DataError
from .datasets import EVAL_DIRS, TEST_DIRS, _scan_folder
from .tar_shards import CLASSES_FILE


def write_shards(folder: str | Path, out: str | Path, *, per_shard: int = 1000, seed: int | None = 0) -> dict[str, list[Path]]:
    """The images of an ImageFolder written as uncompressed tar shards of ``per_shard`` samples:
    ``folder/train/<class>/*`` (and ``val/``, ``test/``) to ``out/train/shard-000000.tar``...
    (and ``out/val/``, ``out/test/``), or ``folder/<class>/*`` to ``out/shard-000000.tar``...;
    the class names to ``out/classes.txt``. A sample is ``<key>.<the file's extension>`` (its bytes
    as they are) and ``<key>.cls`` (its class index); keys number the samples of a split in the
    order written: shuffled with ``seed`` (None: class by class, as the folder lists them).
    ``out`` must be absent or empty. Returns the shards written, by split ("all" for one folder)."""
    source, target = Path(folder), Path(out)
    if per_shard < 1:
        raise DataError(f"per_shard = {per_shard}: a shard holds at least one sample")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f"{target}: not an empty folder; write the shards into a new one")
    if (source / "train").is_dir():
        found = {"train": ("train",), "val": EVAL_DIRS, "test": TEST_DIRS}
        splits = {split: next((source / n for n in names if (source / n).is_dir()), None) for split, names in found.items()}
        splits = {split: folder for split, folder in splits.items() if folder is not None}
    else:
        splits = {"all": source}
    sets = {split: _scan_folder(path) for split, path in splits.items()}
    classes = sets["train" if "train" in sets else "all"].classes
    for split, images in sets.items():
        if images.classes != classes:
            raise DataError(f"{splits[split]}: its class folders differ from train's; give every split the same classes")
    target.mkdir(parents=True, exist_ok=True)
    (target / CLASSES_FILE).write_text("".join(f"{name}\n" for name in classes), encoding="utf-8")
    return {split: _write_split(images, target if split == "all" else target / split, per_shard, seed)
            for split, images in sets.items()}


def _write_split(images: FileImages, folder: Path, per_shard: int, seed: int | None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    order = np.arange(len(images)) if seed is None else np.random.default_rng(seed).permutation(len(images))
    written = []
    for start in range(0, len(order), per_shard):
        path = folder / f"shard-{start // per_shard:06d}.tar"
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            for key_number in range(start, min(start + per_shard, len(order))):
                i = int(order[key_number])
                key, source = f"{key_number:06d}", images.paths[i]
                _add(tar, f"{key}{source.suffix.lower()}", read_image_bytes(source))
                _add(tar, f"{key}.cls", str(images.targets[i]).encode())
        written.append(path)
    return written


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # the same bytes for the same images
    tar.addfile(info, io.BytesIO(data))
