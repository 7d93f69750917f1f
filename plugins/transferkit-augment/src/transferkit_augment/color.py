"""Photometric augmentations: colour jitter and AlexNet's PCA lighting noise.

``ColorJitter`` follows torchvision's semantics: brightness, contrast and saturation factors drawn
uniformly from [max(0, 1 - x), 1 + x], a hue shift uniform in [-hue, hue] (fraction of the hue
circle, hue <= 0.5), the four applied in a random order.

``PCALighting`` is the "fancy PCA" of Krizhevsky et al. (2012) with the ImageNet RGB eigenvalues
and eigenvectors of fb.resnet.torch / timm: each image gets the RGB shift
``eigvec @ (alpha * eigval)`` (images on a 0..1 scale; x255 here), alpha ~ N(0, alphastd^2) per
component, the same shift for every pixel. albumentations' own ``FancyPCA`` estimates the PCA
from each image instead, which is a different augmentation.

Per image, on uint8 HWC RGB arrays, before Normalize.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from albumentations.augmentations.pixel import functional as fpixel

from .base import SeededImageTransform, check_uint8_rgb

# ImageNet RGB statistics on a 0..1 scale (fb.resnet.torch, timm.data.transforms Lighting)
IMAGENET_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
IMAGENET_EIGVEC = np.array(
    [
        [-0.5675, 0.7192, 0.4009],
        [-0.5808, -0.0045, -0.8140],
        [-0.5836, -0.6948, 0.4203],
    ]
)  # columns are the eigenvectors; rows are R, G, B


def _factor_range(x: float, name: str) -> tuple[float, float]:
    if x < 0:
        raise ValueError(f"{name} must be >= 0, got {x!r}")
    return max(0.0, 1.0 - x), 1.0 + x


class ColorJitter(SeededImageTransform):
    """Random brightness, contrast, saturation and hue, in a random order (torchvision semantics).

    After each call ``last_factors`` maps each adjustment to its factor (hue: the shift), in the
    order applied.
    """

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.0,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            _factor_range(float(value), name)
        if not 0.0 <= float(hue) <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5] (a fraction of the hue circle), got {hue!r}")
        self._remember_init(brightness=float(brightness), contrast=float(contrast),
                            saturation=float(saturation), hue=float(hue))
        self.last_factors: dict[str, float] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.last_factors = {}
        return super().__call__(*args, **kwargs)

    def get_params(self) -> dict[str, Any]:
        order = ["brightness", "contrast", "saturation", "hue"]
        self.py_random.shuffle(order)
        factors: dict[str, float] = {}
        for name in order:
            if name == "hue":
                if self.hue > 0:
                    factors[name] = self.py_random.uniform(-self.hue, self.hue)
            else:
                strength = getattr(self, name)
                if strength > 0:
                    factors[name] = self.py_random.uniform(*_factor_range(strength, name))
        return {"factors": factors}

    def apply(self, img: np.ndarray, factors: dict[str, float] | None = None, **params: Any) -> np.ndarray:
        check_uint8_rgb(img, "ColorJitter")
        factors = factors or {}
        for name, value in factors.items():
            if name == "brightness":
                img = fpixel.adjust_brightness_torchvision(img, value)
            elif name == "contrast":
                img = fpixel.adjust_contrast_torchvision(img, value)
            elif name == "saturation":
                img = fpixel.adjust_saturation_torchvision(img, value)
            else:
                img = fpixel.adjust_hue_torchvision(img, value)
        self.last_factors = dict(factors)
        return np.ascontiguousarray(img, dtype=np.uint8)


def lighting_shift(alpha: np.ndarray, eigval: np.ndarray = IMAGENET_EIGVAL, eigvec: np.ndarray = IMAGENET_EIGVEC) -> np.ndarray:
    """The RGB shift on a 0..255 scale for PCA coefficients ``alpha``: 255 * eigvec @ (alpha * eigval)."""
    return 255.0 * (eigvec @ (np.asarray(alpha, dtype=np.float64) * eigval))


class PCALighting(SeededImageTransform):
    """AlexNet PCA lighting noise: add ``eigvec @ (alpha * eigval)`` to every pixel, alpha ~ N(0, alphastd^2).

    After each call ``last_alpha`` holds the three coefficients and ``last_shift`` the RGB shift
    (0..255 scale) before rounding and clipping.
    """

    def __init__(self, alphastd: float = 0.1, p: float = 1.0) -> None:
        super().__init__(p=p)
        if not float(alphastd) >= 0:
            raise ValueError(f"alphastd must be >= 0, got {alphastd!r}")
        self._remember_init(alphastd=float(alphastd))
        self.last_alpha: np.ndarray | None = None
        self.last_shift: np.ndarray | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.last_alpha = self.last_shift = None
        return super().__call__(*args, **kwargs)

    def get_params(self) -> dict[str, Any]:
        alpha = self.random_generator.normal(0.0, self.alphastd, size=3) if self.alphastd > 0 else np.zeros(3)
        return {"alpha": alpha}

    def apply(self, img: np.ndarray, alpha: np.ndarray | None = None, **params: Any) -> np.ndarray:
        check_uint8_rgb(img, "PCALighting")
        alpha = np.zeros(3) if alpha is None else np.asarray(alpha, dtype=np.float64)
        shift = lighting_shift(alpha)
        self.last_alpha, self.last_shift = alpha, shift
        values = np.arange(256, dtype=np.float64)[:, None] + shift[None, :]  # [256, 3]
        lut = np.clip(np.rint(values), 0, 255).astype(np.uint8).reshape(1, 256, 3)
        return cv2.LUT(np.ascontiguousarray(img), lut)


def color_jitter(brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0) -> ColorJitter:
    """Colour jitter: random brightness, contrast, saturation and hue in a random order (torchvision semantics)."""
    return ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)


def pca_lighting(alphastd: float = 0.1) -> PCALighting:
    """AlexNet PCA lighting noise with the ImageNet RGB eigenvalues/eigenvectors, alpha ~ N(0, alphastd^2)."""
    return PCALighting(alphastd=alphastd)
