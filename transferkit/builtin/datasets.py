"""Built-in dataset sources: ImageFolder, CSV manifest, Oxford Flowers-102, handwritten digits and
tar shards (``webdataset``, in its own module).

A source is ``factory(root, seed=0, val_fraction=0.1, **params) -> DatasetSplits``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..data.sources import IMAGE_EXTENSIONS, UNSUPPORTED_FORMATS, ArrayImages, DatasetSplits, FileImages, ImageSet, stratified_split
from ..errors import DataError
from ..hookspecs import hookimpl
from .csv_manifest import read_manifest
from .tar_shards import webdataset

EVAL_DIRS = ("val", "valid", "validation")
TEST_DIRS = ("test",)


def _scan_folder(folder: Path, notes: list[str] | None = None) -> FileImages:
    """The class folders of ``folder`` and their image files. Hidden folders and files (names
    starting with ".", such as ``.thumbnails/`` or macOS ``._photo.jpg``) and image formats that
    cannot be read here are left out, each counted in ``notes``."""
    entries = sorted(d for d in folder.iterdir() if d.is_dir())
    classes = [d.name for d in entries if not d.name.startswith(".")]
    hidden = len(entries) - len(classes)
    if not classes:
        raise DataError(f"{folder}: no class folders inside; expected {folder}/<class name>/<image files>")
    paths, targets, unsupported = [], [], {}
    for index, name in enumerate(classes):
        files = []
        for p in sorted((folder / name).rglob("*")):
            if any(part.startswith(".") for part in p.relative_to(folder / name).parts):
                hidden += p.is_file()
                continue
            suffix = p.suffix.lower()
            if suffix in IMAGE_EXTENSIONS and p.is_file():
                files.append(p)
            elif suffix in UNSUPPORTED_FORMATS and p.is_file():
                unsupported[suffix] = unsupported.get(suffix, 0) + 1
        if not files:
            found = "".join(f"; it holds {n} {ext} file(s): {UNSUPPORTED_FORMATS[ext]}" for ext, n in unsupported.items())
            raise DataError(
                f"{folder / name}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)}){found}; add images or remove it"
            )
        paths += files
        targets += [index] * len(files)
    if notes is not None:
        if hidden:
            notes.append(f"{folder}: skipped {hidden} hidden folder(s) and file(s) (names starting with '.')")
        for ext, n in sorted(unsupported.items()):
            notes.append(f"{folder}: skipped {n} {ext} file(s) ({UNSUPPORTED_FORMATS[ext]})")
    return FileImages(paths, targets, classes)


def _find(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def imagefolder(root: str | None, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> DatasetSplits:
    """A root with ``train/`` and ``val/`` and/or ``test/`` class folders, or one folder of class
    folders split stratified and seeded (``test_fraction``, then ``val_fraction`` of the rest)."""
    if root is None:
        raise DataError("data.root: the imagefolder source needs a folder; set data.root")
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"data.root: {base} is not a folder")
    train_dir, notes = _find(base, ("train",)), []
    if train_dir is None:
        everything = _scan_folder(base, notes)
        train, test = stratified_split(everything, test_fraction, seed, notes, "test")
        train, val = stratified_split(train, val_fraction, seed, notes, "validation")
        return DatasetSplits(train, val, test, notes=notes)
    train = _scan_folder(train_dir, notes)
    val_dir, test_dir = _find(base, EVAL_DIRS), _find(base, TEST_DIRS)
    val = _scan_folder(val_dir, notes) if val_dir else None
    test = _scan_folder(test_dir, notes) if test_dir else None
    if val is None:
        train, val = stratified_split(train, val_fraction, seed, notes, "validation")
    return DatasetSplits(train, val, test, notes=notes)


def csv_manifest(root: str | None, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> DatasetSplits:
    """A CSV file with columns ``path,label`` (and optionally ``split``: train/val/test); paths are
    relative to the CSV's folder. Without a split column, ``test_fraction`` and then
    ``val_fraction`` are held out, stratified and seeded (see ``csv_manifest.read_manifest``)."""
    if root is None:
        raise DataError("data.root: the csv source needs the path of a CSV manifest")
    manifest = read_manifest(root)
    train = manifest.images("train") or FileImages([], [], manifest.classes)
    test, val = manifest.images("test"), manifest.images("val")
    if test is None and not manifest.has_split_column:
        train, test = stratified_split(train, test_fraction, seed, manifest.notes, "test")
    if val is None:
        train, val = stratified_split(train, val_fraction, seed, manifest.notes, "validation")
    return DatasetSplits(train, val, test, manifest.notes)


FLOWERS102_FOLDER = "flowers-102"  # what torchvision's Flowers102 writes inside its root


def flowers102_root_problem(root: str | None) -> str | None:
    """Why ``root`` must not receive Oxford Flowers-102, or None. The download goes only into an
    absent or empty folder, or one holding torchvision's own ``flowers-102/``: never into a user's
    folder of images (whose class folders would then sit beside a downloaded dataset)."""
    base = Path(root or "data/flowers102")
    if not base.exists() or (base / FLOWERS102_FOLDER).is_dir():
        return None
    if not base.is_dir():
        return f"data.root: {base} is a file; the flowers102 source needs a folder to download Oxford Flowers-102 into"
    entries = [e for e in base.iterdir() if not e.name.startswith(".")]
    if not entries:
        return None
    folders = [e for e in entries if e.is_dir()]
    what = "holds class folders (an ImageFolder)" if folders else f"holds {len(entries)} file(s)"
    return (
        f"data.root: {base} {what}, not Oxford Flowers-102; to train on these images set data.source = \"imagefolder\""
        " (or --set data.source=imagefolder); the flowers102 source downloads only into an empty or absent folder"
    )


def flowers102(root: str | None, seed: int = 0, val_fraction: float = 0.1, download: bool = True) -> DatasetSplits:
    """Oxford Flowers-102 through torchvision's downloader, into ``root`` (default
    ``data/flowers102``) when it is absent or empty. A folder of the user's own images is refused in
    one line (use the imagefolder source for it): nothing is written into it."""
    problem = flowers102_root_problem(root)
    if problem:
        raise DataError(problem)
    base = Path(root or "data/flowers102")
    from torchvision.datasets import Flowers102  # torchvision: only this source needs it (list datasets stays fast)

    try:
        splits = {s: Flowers102(str(base), split=s, download=download) for s in ("train", "val", "test")}
    except Exception as exc:  # noqa: BLE001 - offline, or files missing
        raise DataError(
            f"data.root: Oxford Flowers-102 is not in {base} and could not be downloaded ({type(exc).__name__});"
            " download it when online, or train on your own images with data.source = \"imagefolder\""
        ) from None
    classes = list(getattr(splits["train"], "classes", None) or [f"flower_{i:03d}" for i in range(102)])

    def build(ds: Any) -> FileImages:
        return FileImages(ds._image_files, ds._labels, classes)

    return DatasetSplits(build(splits["train"]), build(splits["val"]), build(splits["test"]))


def render_digits(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits rendered as ``size``-pixel RGB images, dark ink on white."""
    from sklearn.datasets import load_digits  # only this source needs it (list datasets stays fast)

    digits = load_digits()
    ink = (digits.images / 16.0 * 255.0).astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(255 - im).resize((size, size), Image.BICUBIC)) for im in ink])
    return np.repeat(images[..., None], 3, axis=-1), digits.target


def digits(root: str | None = None, seed: int = 0, val_fraction: float = 0.1, size: int = 32, test_fraction: float = 0.2) -> DatasetSplits:
    """scikit-learn's handwritten digits (1,797 images, 10 classes), shipped with scikit-learn: no
    download. Split stratified and seeded into train / val / test."""
    images, labels = render_digits(size)
    everything: ImageSet = ArrayImages(images, labels, [str(d) for d in range(10)])
    train, test = stratified_split(everything, test_fraction, seed)
    train, val = stratified_split(train, val_fraction, seed)
    return DatasetSplits(train, val, test)


@hookimpl
def register_datasets(register: Callable[..., None]) -> None:
    register("imagefolder", imagefolder, description="folders of images, one per class (train/ val/ test/)")
    register("csv", csv_manifest, description="a CSV manifest with columns path,label[,split]")
    register("flowers102", flowers102, description="Oxford Flowers-102 (torchvision download into an empty or absent folder)",
             check_root=flowers102_root_problem)
    register("digits", digits, description="scikit-learn's handwritten digits, rendered as images (offline)")
    register("webdataset", webdataset, description="uncompressed tar shards (WebDataset's layout), read image by image each epoch")
