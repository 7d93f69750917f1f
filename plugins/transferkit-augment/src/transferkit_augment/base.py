"""What every image-level transform of this plugin shares: the ImageNet mean pixel used as the
fill colour, and seeding that gives each transform its own random stream.

Why the seeding: in albumentations 2.x, ``Compose(..., seed=s)`` and ``Compose.set_random_seed(s)``
hand the *same* seed ``s`` to every child, so each child's ``py_random`` / ``random_generator``
replays the same sequence. Two transforms that both draw ``py_random.random()`` first then make
identical decisions (HorizontalFlip(p=0.5) and VerticalFlip(p=0.5) flip together every time).
Our transforms mix a fixed per-class salt into the seed, so they are still reproducible under a
seed but independent of RandomResizedCrop, HorizontalFlip and of each other.
"""

from __future__ import annotations

import random
import zlib
from typing import Any, Sequence

import albumentations as A
import numpy as np

from transferkit import IMAGENET_MEAN

# The ImageNet mean as a uint8 RGB pixel: (124, 116, 104). After Normalize(IMAGENET_MEAN, IMAGENET_STD)
# it becomes (0.0056, -0.0049, -0.0082): zero up to the uint8 rounding (|x| < 0.01).
IMAGENET_MEAN_PIXEL = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)


def salted_seed(seed: int, salt: str) -> int:
    """A 63-bit seed from ``seed`` and a text salt, stable across processes and Python versions."""
    h = zlib.crc32(salt.encode("utf-8"))
    mixed = (int(seed) * 0x9E3779B97F4A7C15 + h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    mixed ^= mixed >> 31
    return mixed & 0x7FFFFFFFFFFFFFFF


def as_fill(fill: Sequence[float] | float, channels: int = 3) -> tuple[float, ...]:
    """A fill colour as a tuple of ``channels`` numbers (a scalar is repeated)."""
    if isinstance(fill, (int, float, np.integer, np.floating)):
        return (float(fill),) * channels
    values = tuple(float(v) for v in fill)
    if len(values) != channels:
        raise ValueError(f"fill must have {channels} values (one per channel), got {len(values)}")
    if any(v < 0 or v > 255 for v in values):
        raise ValueError(f"fill values must lie in [0, 255] for uint8 images, got {values}")
    return values


def check_uint8_rgb(img: np.ndarray, who: str) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{who} expects a uint8 HWC RGB image (before Normalize), got {img.dtype} {img.shape}")


class SeededImageTransform(A.ImageOnlyTransform):
    """An ``ImageOnlyTransform`` whose random stream is ``seed`` mixed with a per-class salt.

    Subclasses draw only from ``self.py_random`` and ``self.random_generator`` (never the global
    ``random`` or ``np.random``), as albumentations 2 expects.
    """

    def set_random_seed(self, seed: int | None) -> None:
        if seed is None:
            super().set_random_seed(None)
            return
        salt = f"transferkit_augment.{type(self).__name__}"
        own = salted_seed(seed, salt)
        self.random_generator = np.random.default_rng(own)
        self.py_random = random.Random(own)
        self.seed = seed

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return tuple(getattr(self, "_init_names", ()))

    def _remember_init(self, **kwargs: Any) -> None:
        """Record the constructor arguments (for ``repr`` and albumentations serialisation)."""
        self._init_names = tuple(kwargs)
        for name, value in kwargs.items():
            setattr(self, name, value)
