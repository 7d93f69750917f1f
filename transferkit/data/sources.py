"""Labelled image sets and the train / val / test splits a run trains and reports on.

Every set yields ``(uint8 HWC RGB array, int label)``; transforms and tensors come later, so the
same set serves training, evaluation, caching and prediction.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError
from .image_files import read_image_bytes
from .stratified import stratified_train_test

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# image formats Pillow does not read here: named (with what to do) instead of skipped without a word
UNSUPPORTED_FORMATS = {
    ".heic": "install pillow-heif to read them", ".heif": "install pillow-heif to read them",
    ".exr": "HDR: convert them to 16-bit PNG or TIFF", ".hdr": "HDR: convert them to 16-bit PNG or TIFF",
    ".dng": "camera raw: convert them to PNG or JPEG", ".cr2": "camera raw: convert them to PNG or JPEG",
    ".nef": "camera raw: convert them to PNG or JPEG", ".arw": "camera raw: convert them to PNG or JPEG",
    ".svg": "vector graphics: render them to PNG", ".jxl": "convert them to PNG or JPEG",
}
try:  # HEIC/HEIF (iPhone photos) when pillow-heif is installed
    from pillow_heif import register_heif_opener  # type: ignore[import-not-found]
except ImportError:
    pass
else:
    register_heif_opener()
    IMAGE_EXTENSIONS += (".heic", ".heif")
    UNSUPPORTED_FORMATS = {k: v for k, v in UNSUPPORTED_FORMATS.items() if k not in (".heic", ".heif")}


def read_image(path: str | Path) -> np.ndarray:
    """Decode a file to uint8 RGB, honouring EXIF orientation. Only a regular file is opened, up to
    a size limit (``image_files``); an image over Pillow's pixel limit (``Image.MAX_IMAGE_PIXELS``)
    is refused before it is decoded; float and 16-bit images are scaled (``to_rgb_array``).
    Problems with the file are a ``DataError`` naming it."""
    return decode_image_bytes(read_image_bytes(path), path)


def decode_image_bytes(data: bytes, path: str | Path) -> np.ndarray:
    """``read_image`` on bytes already read (``read_image_bytes``); ``path`` names them in errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                ImageOps.exif_transpose(img, in_place=True)  # no second full-resolution copy
                return to_rgb_array(img)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DataError(f"{path}: over the decompression-bomb limit of {Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def to_rgb_array(image: Any, where: str = "image") -> np.ndarray:
    """PIL image, path, array or tensor (HW, HWC or CHW; uint8 0-255 or float in [0, 1]) -> uint8
    HWC RGB array. Anything else (a batch, normalised floats, 16-bit values) is a ``DataError``
    that starts with ``where`` and says what to give instead."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        elif image.mode.startswith("I;16") or image.mode == "I":
            arr = np.asarray(image, dtype=np.float64)
            if arr.size and (arr.min() < 0 or arr.max() > 65535):
                raise DataError(f"{image.mode} image with values {arr.min():g}..{arr.max():g}: not 8- or 16-bit; convert it")
            scale = 65535.0 if arr.size and arr.max() > 255 else 255.0
            image = Image.fromarray((arr / scale * 255.0).round().astype(np.uint8))
        elif image.mode == "F":  # 32-bit float (TIFF): 0..1, 0..255 or 0..65535, not clipped to black
            image = Image.fromarray(_float_to_uint8(np.asarray(image, dtype=np.float64)))
        rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy an RGB image too
        return np.array(rgb, dtype=np.uint8)
    if hasattr(image, "detach"):
        arr = image.detach().cpu().numpy()
    elif isinstance(image, np.ndarray) or hasattr(image, "__array__"):
        arr = np.asarray(image)
    else:
        raise DataError(f"{where}: a {type(image).__name__} is not an image; give a PIL image, a file path, an array or a tensor")
    return _array_to_rgb(arr, where)


FLOAT_SLACK = 1e-3  # float images a rounding error outside [0, 1] are still [0, 1]

# What ``read_image`` and ``to_rgb_array`` do to each kind of image before the evaluation
# preprocessing: the "pixel" of an export's ``pixel / 255`` (the export's JSON carries it as
# "decode", so a deployment script gives 16-bit and float images the values transferkit gives).
DECODE_CONTRACT: dict[str, Any] = {
    "result": "uint8 RGB (H, W, 3); 'pixel / 255' in the input's values is this array's value / 255",
    "files": {
        "orientation": "the EXIF orientation is applied first (PIL.ImageOps.exif_transpose)",
        "8-bit (L, P, RGB, CMYK, YCbCr...)": "PIL's Image.convert('RGB')",
        "transparency (RGBA, LA, P with a transparent colour)": "composited over opaque white, then RGB",
        "16-bit or 32-bit integer grey (I;16, I)": "values must be 0..65535; when the image's largest value is above 255:"
        " round(value * 255 / 65535), else the value as it is (0..255); then grey to RGB",
        "16 bits per channel RGB(A) (48/64-bit PNG, TIFF)": "Pillow reads them as 8-bit: the high byte, value // 256",
        "32-bit float (F)": "finite values from 0: largest <= 1: round(value * 255); <= 255: round(value);"
        " <= 65535: round(value / 257); clipped to 0..255; NaN, infinite or negative values are refused",
    },
    "arrays (Python API)": {
        "layout": "(H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4; grey repeated to RGB; a 4th channel dropped",
        "uint8 / integers 0..255": "as they are", "bool": "x 255",
        "float": "in [0, 1] (+-0.001): round(value * 255); other ranges refused",
    },
}


def _array_to_rgb(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 4:
        raise DataError(f"{where}: an array of shape {tuple(arr.shape)} is a batch of images; give one image (H, W, C) or (C, H, W)")
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise DataError(f"{where}: an array of shape {tuple(arr.shape)} is not an image; give (H, W), (H, W, C) or (C, H, W)")
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))  # CHW -> HWC
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] not in (1, 3, 4):
        raise DataError(f"{where}: an image of shape {tuple(arr.shape)} has {arr.shape[-1]} channels; give 1 (grey), 3 (RGB) or 4 (RGBA)")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]  # RGBA arrays: the colour without the alpha channel
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr.astype(np.uint8) * 255)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError(f"{where}: the image holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -FLOAT_SLACK:
            raise DataError(
                f"{where}: float values from {lo:.2f} to {hi:.2f} look normalised (e.g. torchvision's Normalize);"
                " transferkit normalises for the backbone itself: give float images in [0, 1] (ToTensor() without"
                " Normalize) or uint8 0-255"
            )
        if hi > 1.0 + FLOAT_SLACK:
            raise DataError(f"{where}: float values up to {hi:.1f}; float images must be in [0, 1]: divide by 255, or give uint8 0-255")
        return np.ascontiguousarray((np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8))
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: integer values from {lo} to {hi}; give uint8 0-255 (scale 16-bit images to 0-255)")
        return np.ascontiguousarray(arr.astype(np.uint8))
    raise DataError(f"{where}: an array of {arr.dtype} is not an image; give uint8 0-255 or float in [0, 1]")


def _float_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Float pixel values to uint8: 0..1 scaled by 255, 0..255 kept, 0..65535 scaled down; NaN,
    infinities and other ranges are refused (they would decode as black or white)."""
    if not arr.size:
        return arr.astype(np.uint8)
    if not np.isfinite(arr).all():
        raise DataError("float image with NaN or infinite values; not an image transferkit can scale")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -0.01:  # a normalised tensor, or not pixels at all: clipping would give black
        raise DataError(f"float image with values {lo:g}..{hi:g}: negative values are not pixels; give 0..1 or 0..255")
    if hi <= 1.0:
        arr = arr * 255.0
    elif hi > 255.0:
        if hi > 65535.0:
            raise DataError(f"float image with values {lo:g}..{hi:g}: expected 0..1, 0..255 or 0..65535; convert it to 8 or 16 bits")
        arr = arr / 257.0
    return np.clip(arr, 0, 255).round().astype(np.uint8)


class ImageSet:
    """A labelled set of images: ``targets`` (ints), ``classes`` (names), ``load(i)``."""

    classes: list[str]
    targets: list[int]

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        return f"item {index}"

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.load(index), self.targets[index]

    def subset(self, indices: Sequence[int]) -> "ImageSet":
        return SubsetImages(self, list(indices))


def image_files_in(folder: Path) -> list[Path]:
    """The image files under ``folder`` (recursively, sorted; hidden files and folders, whose names
    start with ".", left out)."""
    folder = Path(folder)
    return sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
                  and not any(part.startswith(".") for part in f.relative_to(folder).parts))


class FileImages(ImageSet):
    """Images on disk, decoded on demand."""

    def __init__(self, paths: Sequence[str | Path], targets: Sequence[int], classes: Sequence[str]) -> None:
        self.paths = [Path(p) for p in paths]
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)

    def load(self, index: int) -> np.ndarray:
        return read_image(self.paths[index])

    def describe(self, index: int) -> str:
        return str(self.paths[index])


class ArrayImages(ImageSet):
    """Images already in memory (uint8 HWC)."""

    def __init__(self, images: Sequence[np.ndarray] | np.ndarray, targets: Sequence[int], classes: Sequence[str]) -> None:
        self.images = images
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)

    def load(self, index: int) -> np.ndarray:
        return to_rgb_array(self.images[index])

    def describe(self, index: int) -> str:
        item = self.images[index]
        return str(item) if isinstance(item, (str, Path)) else f"item {index}"


class SubsetImages(ImageSet):
    def __init__(self, base: ImageSet, indices: list[int]) -> None:
        self.base, self.indices = base, indices
        self.targets = [base.targets[i] for i in indices]
        self.classes = base.classes

    def load(self, index: int) -> np.ndarray:
        return self.base.load(self.indices[index])

    def describe(self, index: int) -> str:
        return self.base.describe(self.indices[index])

    def subset(self, indices: Sequence[int]) -> "ImageSet":
        # a subset of a subset is a subset of the base: decoding (and splits.csv) see the files behind it
        return SubsetImages(self.base, [self.indices[i] for i in indices])


class JoinedImages(ImageSet):
    """Several image sets of the same classes, one after the other."""

    def __init__(self, parts: Sequence[ImageSet]) -> None:
        self.parts = list(parts)
        self.targets = [t for part in self.parts for t in part.targets]
        self.classes = self.parts[0].classes
        self._where = [(p, i) for p, part in enumerate(self.parts) for i in range(len(part))]

    def load(self, index: int) -> np.ndarray:
        part, i = self._where[index]
        return self.parts[part].load(i)

    def describe(self, index: int) -> str:
        part, i = self._where[index]
        return self.parts[part].describe(i)


@dataclass
class DatasetSplits:
    """The splits of one dataset; ``val`` picks the best checkpoint, ``test`` is reported.
    ``notes``: warnings about the data found while reading it, and what the source left out and why
    (hidden folders, formats it cannot read), shown before training."""

    train: ImageSet
    val: ImageSet | None = None
    test: ImageSet | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    def parts(self) -> dict[str, ImageSet]:
        """The splits present, by name ("train", "val", "test")."""
        return {name: images for name, images in (("train", self.train), ("val", self.val), ("test", self.test)) if images is not None}

    def check(self, origin: str = "data") -> None:
        if len(self.train) == 0:
            raise DataError(f"{origin}: the training split has no images; check data.root")
        if len(self.classes) < 2:
            raise DataError(f"{origin}: found {len(self.classes)} class; a classifier needs at least 2 class folders (classes)")
        for name, split in (("val", self.val), ("test", self.test)):
            if split is not None and list(split.classes) != list(self.classes):
                raise DataError(
                    f"{origin}: the {name} split's classes {capped(split.classes)} differ from train's {capped(self.classes)};"
                    " give every split the same class folders"
                )
        self._check_every_class_trains(origin)

    def _check_every_class_trains(self, origin: str) -> None:
        """A class with no training image cannot be learnt, yet would be scored: an error with the counts."""
        counts = {n: np.bincount(s.targets, minlength=len(self.classes)) if s is not None and len(s) else None
                  for n, s in (("train", self.train), ("val", self.val), ("test", self.test))}
        empty = [i for i, c in enumerate(counts["train"]) if c == 0]
        if not empty:
            return

        def held(i: int) -> str:
            parts = [f"{n} {int(c[i])}" for n, c in counts.items() if n != "train" and c is not None and c[i]]
            return ", ".join(parts) or "no images"

        if all(held(i) == "no images" for i in empty):  # named in the class list, never seen
            raise DataError(
                f"{origin}: {len(empty)} of {len(self.classes)} classes have no training image: {capped([self.classes[i] for i in empty])};"
                " add images of them, or leave them out of the class list"
            )
        shown = "; ".join(f"{self.classes[i]!r}: {held(i)}" for i in empty[:5]) + ("; ..." if len(empty) > 5 else "")
        total = sum(int(c.sum()) for c in counts.values() if c is not None)
        raise DataError(
            f"{origin}: {len(empty)} of {len(self.classes)} classes have no training image after the split ({shown});"
            f" {total} images for {len(self.classes)} classes is too few to hold out validation and test images of every"
            " class: add images, lower data.val_fraction (or the test share), or give train/ and val/ folders"
        )

    def counts(self) -> dict[str, list[int]]:
        """Images per class (in ``classes`` order) of each split present."""
        return {name: np.bincount(np.asarray(images.targets, dtype=np.int64), minlength=len(self.classes)).tolist()
                for name, images in self.parts().items()}


def capped(items: Sequence[Any], limit: int = 8, more: str = "", quote: bool = True) -> str:
    """At most ``limit`` items, comma-separated (strings quoted unless ``quote`` is False), then
    "... and N more" (with ``more`` after it, e.g. where the whole list was written): error
    lines stay readable on a terminal."""
    shown = ", ".join(repr(x) if isinstance(x, str) and quote else str(x) for x in list(items)[:limit])
    rest = len(items) - limit
    return shown + (f", ... and {rest} more{more}" if rest > 0 else "")


def stratified_split(
    images: ImageSet, fraction: float, seed: int, notes: list[str] | None = None, what: str = "held-out"
) -> tuple[ImageSet, ImageSet | None]:
    """Hold out ``fraction`` of ``images`` per class, seeded; None when 0. scikit-learn's
    stratified split where it applies; where it does not (a class of one image, or fewer images
    held out than there are classes) each class still gets its share (largest remainders, seeded
    ties), no class gives up its last image, and ``notes`` gets one line naming the classes with
    no ``what`` image. (scikit-learn's split is ``data.stratified``'s port: the same indices.)"""
    if fraction <= 0:
        return images, None
    indices = np.arange(len(images))
    targets = np.asarray(images.targets, dtype=np.int64)
    counts = np.bincount(targets, minlength=len(images.classes))
    present = counts[counts > 0]
    if present.min() >= 2 and math.ceil(fraction * len(images)) >= len(present):
        keep, held = stratified_train_test(indices, targets, fraction, seed)  # scikit-learn's, in numpy
        return images.subset(sorted(keep)), images.subset(sorted(held))
    quota = _class_quotas(counts, fraction, seed)
    rng = np.random.default_rng(seed)
    held = sorted(int(i) for c in np.flatnonzero(quota) for i in rng.permutation(np.flatnonzero(targets == c))[: quota[c]])
    keep = sorted(set(indices.tolist()) - set(held))
    if notes is not None:
        _note_unheld(images.classes, counts, quota, what, notes)
    return images.subset(keep), images.subset(held)


def _class_quotas(counts: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Images to hold out per class: ``ceil(fraction * n)`` in all (as scikit-learn; n counts the
    classes of two or more images), shared in proportion to the class sizes by largest remainders
    (ties in a seeded order), each class keeping at least one image."""
    room = np.maximum(counts - 1, 0)
    splittable = np.where(counts >= 2, counts, 0)  # a class of one image gives none, and takes no share
    total = min(math.ceil(fraction * int(splittable.sum())), int(room.sum()))
    exact = total * splittable / max(int(splittable.sum()), 1)
    quota = np.minimum(np.floor(exact).astype(np.int64), room)
    tie = np.random.default_rng(seed).permutation(len(counts))
    order = sorted(range(len(counts)), key=lambda c: (-(exact[c] - quota[c]), tie[c]))
    while quota.sum() < total:
        for c in order:
            if quota.sum() < total and quota[c] < room[c]:
                quota[c] += 1
    return quota


def _note_unheld(classes: Sequence[str], counts: np.ndarray, quota: np.ndarray, what: str, notes: list[str]) -> None:
    single = [classes[c] for c in np.flatnonzero(counts == 1)]
    none = [classes[c] for c in np.flatnonzero((counts >= 2) & (quota == 0))]
    if single:
        said = f"{len(single)} class(es) have a single image to split ({capped(single)}): it trains, so no "
        earlier = next((i for i, n in enumerate(notes) if n.startswith(said)), None)
        if earlier is None:
            notes.append(f"{said}{what} image of them; add images")
        else:  # the same classes, already named for the test split: one line for both
            notes[earlier] = notes[earlier].replace(" image of them;", f" or {what} image of them;", 1)
    if none:
        notes.append(f"{int(quota.sum())} {what} images for {int((counts > 0).sum())} classes: {len(none)} class(es) get"
                     f" none ({capped(none)}); raise the {what} fraction or add images")
