"""Cutout (DeVries & Taylor, 2017): mask one square patch of each image.

As in the paper: exactly one square per image, its centre uniform over all pixels of the image,
the square clipped at the borders (so a patch near an edge covers less area; the paper counts on
this). The paper's CIFAR setting, 16 px on 32 px images, is ``size=0.5``. The side is
``round(size * min(H, W))`` pixels. The patch is filled with the ImageNet mean pixel, so after
Normalize(ImageNet mean, std) it is zero up to the uint8 rounding (|x| < 0.01), as the paper's
zero patch on normalised images.

Per image, on uint8 HWC RGB arrays, before Normalize.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import IMAGENET_MEAN_PIXEL, SeededImageTransform, as_fill, check_uint8_rgb


def square_box(h: int, w: int, side: int, cy: int, cx: int) -> tuple[int, int, int, int]:
    """The square of ``side`` pixels centred at pixel (cy, cx), clipped: (y1, y2, x1, x2), half-open."""
    y1, x1 = cy - side // 2, cx - side // 2
    return max(y1, 0), min(y1 + side, h), max(x1, 0), min(x1 + side, w)


class Cutout(SeededImageTransform):
    """One square of side ``size * min(H, W)``, centre uniform over the image, clipped, set to ``fill``.

    After each call, ``last_box`` is the (y1, y2, x1, x2) masked, or None when skipped (p < 1).
    """

    def __init__(
        self,
        size: float = 0.5,
        fill: Sequence[float] | float = IMAGENET_MEAN_PIXEL,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if not 0.0 < float(size) <= 1.0:
            raise ValueError(f"size (the square's side as a fraction of the image side) must lie in (0, 1], got {size!r}")
        self._remember_init(size=float(size), fill=as_fill(fill))
        self.last_box: tuple[int, int, int, int] | None = None

    def side(self, h: int, w: int) -> int:
        """The square's side in pixels for an image of h x w."""
        return max(1, int(round(self.size * min(h, w))))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.last_box = None
        return super().__call__(*args, **kwargs)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        cy, cx = self.py_random.randrange(h), self.py_random.randrange(w)
        return {"box": square_box(h, w, self.side(h, w), cy, cx)}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any) -> np.ndarray:
        check_uint8_rgb(img, "Cutout")
        y1, y2, x1, x2 = box
        out = img.copy()
        out[y1:y2, x1:x2] = np.asarray(self.fill, dtype=np.float64).round().astype(np.uint8)
        self.last_box = box
        return out


def cutout(size: float = 0.5, fill: tuple[int, int, int] = IMAGENET_MEAN_PIXEL, p: float = 1.0) -> Cutout:
    """Cutout (DeVries & Taylor 2017): one square of side size*image side, centre uniform, clipped, mean-filled."""
    return Cutout(size=size, fill=fill, p=p)
