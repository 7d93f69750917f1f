"""Test-time augmentation: deterministic views of an image at the evaluation geometry, averaged
in probability space by the core (``--tta NAME`` on evaluate and predict).

Each policy gets the image (uint8 HWC), ``resize(image, shorter=None)`` (the evaluation resize of
the shorter side, or to ``shorter`` pixels) and the crop size. Views of a flipped image are the
flipped views, so ``flip`` and ``10crop`` predictions are exactly invariant to a mirrored input.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

Resize = Callable[..., np.ndarray]


def _centre(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def _five(image: np.ndarray, size: int) -> list[np.ndarray]:
    h, w = image.shape[:2]
    corners = [image[:size, :size], image[:size, w - size :], image[h - size :, :size], image[h - size :, w - size :]]
    return corners + [_centre(image, size)]


def _mirror(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1])


class Flip:
    """The centre crop and the centre crop of the mirrored image (2 views)."""

    def views(self, image: np.ndarray, resize: Resize, size: int) -> list[np.ndarray]:
        return [_centre(resize(image), size), _centre(resize(_mirror(image)), size)]


class FiveCrop:
    """Four corners and the centre of the resized image (5 views)."""

    def views(self, image: np.ndarray, resize: Resize, size: int) -> list[np.ndarray]:
        return _five(resize(image), size)


class TenCrop:
    """Five crops of the image and five of its mirror (10 views), as in AlexNet's evaluation."""

    def views(self, image: np.ndarray, resize: Resize, size: int) -> list[np.ndarray]:
        return _five(resize(image), size) + _five(resize(_mirror(image)), size)


class MultiScale:
    """Centre crops after resizing the shorter side to ``scale x`` the evaluation resize, for each
    scale (clamped to at least the crop size), with their mirrors when ``flip``."""

    def __init__(self, scales: Sequence[float] = (0.875, 1.0, 1.143), flip: bool = True) -> None:
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"scales must be positive numbers, got {list(scales)}")
        self.scales, self.flip = [float(s) for s in scales], flip

    def views(self, image: np.ndarray, resize: Resize, size: int) -> list[np.ndarray]:
        base = min(resize(image).shape[:2])
        out = []
        for scale in self.scales:
            shorter = max(size, int(round(base * scale)))
            out.append(_centre(resize(image, shorter), size))
            if self.flip:
                out.append(_centre(resize(_mirror(image), shorter), size))
        return out
