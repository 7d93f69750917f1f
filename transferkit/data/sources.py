"""Labelled image sets and the train / val / test splits a run trains and reports on.

Every set yields ``(uint8 HWC RGB array, int label)``; transforms and tensors come later, so the
same set serves training, evaluation, caching and prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_image(path: str | Path) -> np.ndarray:
    """Decode a file to uint8 RGB, honouring EXIF orientation."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return to_rgb_array(img)


def to_rgb_array(image: Any) -> np.ndarray:
    """PIL image, array (HW, HWC, CHW float or uint8) or tensor -> uint8 HWC RGB array."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        elif image.mode.startswith("I;16") or image.mode == "I":
            arr = np.asarray(image, dtype=np.float64)
            scale = 65535.0 if arr.max() > 255 else 255.0
            image = Image.fromarray((arr / scale * 255.0).round().astype(np.uint8))
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.transpose(arr, (1, 2, 0))  # CHW -> HWC
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * 255.0 if arr.max() <= 1.0 else arr, 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


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


class SubsetImages(ImageSet):
    def __init__(self, base: ImageSet, indices: list[int]) -> None:
        self.base, self.indices = base, indices
        self.targets = [base.targets[i] for i in indices]
        self.classes = base.classes

    def load(self, index: int) -> np.ndarray:
        return self.base.load(self.indices[index])

    def describe(self, index: int) -> str:
        return self.base.describe(self.indices[index])


class WrappedDataset(ImageSet):
    """Any map-style dataset returning ``(image, label)``: PIL, array, tensor or path images."""

    def __init__(self, dataset: Any, classes: Sequence[str] | None = None) -> None:
        self.dataset = dataset
        targets = getattr(dataset, "targets", None)
        if targets is None:
            targets = [int(dataset[i][1]) for i in range(len(dataset))]
        self.targets = [int(t) for t in targets]
        names = classes or getattr(dataset, "classes", None)
        self.classes = list(names) if names else [str(i) for i in range(max(self.targets) + 1)]

    def load(self, index: int) -> np.ndarray:
        return to_rgb_array(self.dataset[index][0])


@dataclass
class DatasetSplits:
    """The splits of one dataset; ``val`` picks the best checkpoint, ``test`` is reported."""

    train: ImageSet
    val: ImageSet | None = None
    test: ImageSet | None = None

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    def check(self, origin: str = "data") -> None:
        if len(self.train) == 0:
            raise DataError(f"{origin}: the training split has no images; check data.root")
        if len(self.classes) < 2:
            raise DataError(f"{origin}: found {len(self.classes)} class; a classifier needs at least 2 class folders")
        for name, split in (("val", self.val), ("test", self.test)):
            if split is not None and list(split.classes) != list(self.classes):
                raise DataError(
                    f"{origin}: the {name} split's classes {split.classes} differ from train's {self.classes};"
                    " give every split the same class folders"
                )


def stratified_split(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet | None]:
    """Hold out ``fraction`` of ``images`` per class (scikit-learn, seeded); None when 0."""
    if fraction <= 0:
        return images, None
    from sklearn.model_selection import train_test_split  # sklearn: not on the path of `transferkit list`

    indices = np.arange(len(images))
    counts = np.bincount(images.targets, minlength=len(images.classes))
    stratify = images.targets if counts.min() >= 2 and round(fraction * len(images)) >= len(images.classes) else None
    keep, held = train_test_split(indices, test_size=fraction, random_state=seed, stratify=stratify)
    return images.subset(sorted(keep)), images.subset(sorted(held))
