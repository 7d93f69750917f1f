"""RandAugment (Cubuk et al., 2019): apply N operations drawn uniformly (with replacement) from
14, all at one global magnitude M.

Magnitude scale: M in [0, 30] (the paper's and torchvision's scale; torchvision's default is
RandAugment(num_ops=2, magnitude=9) on 31 bins). An op's strength grows linearly with M up to
the range below at M = 30, the same maxima as timm's ``rand-m*`` (whose scale is 0..10, so timm's
m9 is M = 27 here) and torchvision's:

    Rotate      +-30 degrees                       signed
    ShearX/Y    +-0.3 (shear factor)               signed
    TranslateX/Y +-0.45 of the image side          signed
    Brightness, Color, Contrast, Sharpness: enhancement factor 1 +- 0.9   signed
    Posterize   8 bits -> 4 bits (8 - round(4 M/30))
    Solarize    threshold 256 -> 0 (256 (1 - M/30)); M = 0 leaves the image alone
    Identity, AutoContrast, Equalize: no magnitude

Signed ops take a random sign each time they are applied. With ``magnitude_std > 0`` each op's
level is drawn from N(M, magnitude_std) (``inf``: uniform on [0, M], as timm) and clipped to
[0, 30]. Geometric ops act about the image centre, with bilinear interpolation, filling the
uncovered area with the ImageNet mean pixel (0 after normalisation).

Per image, on uint8 HWC RGB arrays, before Normalize. Pixel ops use albumentations' functional
ops where they exist (auto-contrast, equalize, brightness, contrast, saturation, posterize),
OpenCV/numpy otherwise (affine warps, sharpness, solarize).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import cv2
import numpy as np
from albumentations.augmentations.pixel import functional as fpixel

from .base import IMAGENET_MEAN_PIXEL, SeededImageTransform, as_fill, check_uint8_rgb

MAX_MAGNITUDE = 30.0

OPS = (
    "Identity",
    "AutoContrast",
    "Equalize",
    "Rotate",
    "Solarize",
    "Color",
    "Posterize",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)
SIGNED = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Brightness", "Color", "Contrast", "Sharpness"})
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
COLOUR = ("Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize")
WITHOUT_MAGNITUDE = ("Identity", "AutoContrast", "Equalize")

# the value of each op's argument at M = 30
_RANGE = {"Rotate": 30.0, "ShearX": 0.3, "ShearY": 0.3, "TranslateX": 0.45, "TranslateY": 0.45,
          "Brightness": 0.9, "Color": 0.9, "Contrast": 0.9, "Sharpness": 0.9}


class AppliedOp(NamedTuple):
    """One op as applied: its name, its level on the 0..30 scale, and its argument (signed)."""

    name: str
    level: float
    arg: float


def op_argument(name: str, level: float) -> float:
    """The unsigned argument of op ``name`` at ``level`` on the 0..30 scale."""
    t = min(max(level, 0.0), MAX_MAGNITUDE) / MAX_MAGNITUDE
    if name in _RANGE:
        return _RANGE[name] * t
    if name == "Posterize":
        return float(8 - int(round(4 * t)))  # bits kept
    if name == "Solarize":
        return 256.0 * (1.0 - t)  # threshold: pixels >= it are inverted
    return 0.0


# -- the ops: (uint8 HWC image, argument, fill, interpolation) -> uint8 HWC image -------------------
def _warp(img: np.ndarray, to_source: np.ndarray, fill: tuple[float, ...], interpolation: int) -> np.ndarray:
    """Warp by a 2x3 matrix mapping output pixel coordinates to input ones."""
    h, w = img.shape[:2]
    return cv2.warpAffine(
        img, to_source, (w, h), flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=fill,
    )


def _centre(img: np.ndarray) -> tuple[float, float]:
    h, w = img.shape[:2]
    return (w - 1) / 2.0, (h - 1) / 2.0


def _rotate(img: np.ndarray, degrees: float, fill: tuple[float, ...], interp: int) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D(_centre(img), degrees, 1.0)
    return cv2.warpAffine(img, matrix, (img.shape[1], img.shape[0]), flags=interp,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def _shear_x(img: np.ndarray, s: float, fill: tuple[float, ...], interp: int) -> np.ndarray:
    _, cy = _centre(img)
    return _warp(img, np.array([[1.0, s, -s * cy], [0.0, 1.0, 0.0]]), fill, interp)


def _shear_y(img: np.ndarray, s: float, fill: tuple[float, ...], interp: int) -> np.ndarray:
    cx, _ = _centre(img)
    return _warp(img, np.array([[1.0, 0.0, 0.0], [s, 1.0, -s * cx]]), fill, interp)


def _translate_x(img: np.ndarray, frac: float, fill: tuple[float, ...], interp: int) -> np.ndarray:
    return _warp(img, np.array([[1.0, 0.0, frac * img.shape[1]], [0.0, 1.0, 0.0]]), fill, interp)


def _translate_y(img: np.ndarray, frac: float, fill: tuple[float, ...], interp: int) -> np.ndarray:
    return _warp(img, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, frac * img.shape[0]]]), fill, interp)


_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13.0  # PIL's SMOOTH filter


def _sharpness(img: np.ndarray, v: float, *_: Any) -> np.ndarray:
    """PIL ImageEnhance.Sharpness: blend with the smoothed image (border pixels not smoothed)."""
    degenerate = cv2.filter2D(img, -1, _SMOOTH, borderType=cv2.BORDER_REPLICATE)
    degenerate[0, :], degenerate[-1, :], degenerate[:, 0], degenerate[:, -1] = img[0, :], img[-1, :], img[:, 0], img[:, -1]
    return cv2.addWeighted(img, 1.0 + v, degenerate, -v, 0.0)  # uint8 in, saturated uint8 out


def _solarize(img: np.ndarray, threshold: float, *_: Any) -> np.ndarray:
    values = np.arange(256)
    lut = np.where(values >= threshold, 255 - values, values).astype(np.uint8)
    return cv2.LUT(img, lut)


def _posterize(img: np.ndarray, bits: float, *_: Any) -> np.ndarray:
    bits = int(bits)
    return img if bits >= 8 else fpixel.posterize(img, bits)


_APPLY: dict[str, Callable[..., np.ndarray]] = {
    "Identity": lambda img, *_: img,
    "AutoContrast": lambda img, *_: fpixel.auto_contrast(img, cutoff=0, ignore=None, method="pil"),
    "Equalize": lambda img, *_: fpixel.equalize(img, mode="pil", by_channels=True),
    "Rotate": _rotate,
    "Solarize": _solarize,
    "Color": lambda img, v, *_: fpixel.adjust_saturation_torchvision(img, 1.0 + v),
    "Posterize": _posterize,
    "Contrast": lambda img, v, *_: fpixel.adjust_contrast_torchvision(img, 1.0 + v),
    "Brightness": lambda img, v, *_: fpixel.adjust_brightness_torchvision(img, 1.0 + v),
    "Sharpness": _sharpness,
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "TranslateX": _translate_x,
    "TranslateY": _translate_y,
}


def apply_op(
    img: np.ndarray,
    name: str,
    arg: float,
    fill: Sequence[float] = IMAGENET_MEAN_PIXEL,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Apply one RandAugment op with its (signed) argument to a uint8 HWC RGB image."""
    out = _APPLY[name](img, arg, as_fill(fill), interpolation)
    return np.ascontiguousarray(out, dtype=np.uint8)


class RandAugment(SeededImageTransform):
    """RandAugment: ``n`` ops drawn uniformly with replacement, each at magnitude ``m`` (0..30).

    After each call, ``last_ops`` lists the ops applied as ``AppliedOp(name, level, arg)``.
    ``ops`` restricts the pool (default: the paper's 14).
    """

    def __init__(
        self,
        n: int = 2,
        m: float = 9.0,
        magnitude_std: float = 0.0,
        ops: Sequence[str] | None = None,
        fill: Sequence[float] | float = IMAGENET_MEAN_PIXEL,
        interpolation: int = cv2.INTER_LINEAR,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if int(n) != n or n < 0:
            raise ValueError(f"n (the number of ops) must be a non-negative integer, got {n!r}")
        if not 0.0 <= float(m) <= MAX_MAGNITUDE:
            raise ValueError(f"m (the magnitude) must lie in [0, {MAX_MAGNITUDE:g}], got {m!r}")
        if not float(magnitude_std) >= 0.0:
            raise ValueError(f"magnitude_std must be >= 0 (or inf), got {magnitude_std!r}")
        pool = tuple(OPS if ops is None else ops)
        unknown = [o for o in pool if o not in _APPLY]
        if unknown or not pool:
            raise ValueError(f"unknown RandAugment ops {unknown}; choose from {', '.join(OPS)}")
        self._remember_init(n=int(n), m=float(m), magnitude_std=float(magnitude_std), ops=pool,
                            fill=as_fill(fill), interpolation=int(interpolation))
        self.last_ops: list[AppliedOp] = []

    def _level(self) -> float:
        m, std = self.m, self.magnitude_std
        if std == math.inf:
            level = self.py_random.uniform(0.0, m)
        elif std > 0:
            level = self.py_random.gauss(m, std)
        else:
            level = m
        return min(max(level, 0.0), MAX_MAGNITUDE)

    def sample_ops(self) -> list[AppliedOp]:
        """Draw the ops (names, levels and signed arguments) for one image."""
        chosen = []
        for _ in range(self.n):
            name = self.ops[self.py_random.randrange(len(self.ops))]
            level = self._level() if name not in WITHOUT_MAGNITUDE else 0.0
            arg = op_argument(name, level)
            if name in SIGNED and self.py_random.random() < 0.5:
                arg = -arg
            chosen.append(AppliedOp(name, level, arg))
        return chosen

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.last_ops = []  # stays empty when the transform is skipped (p < 1)
        return super().__call__(*args, **kwargs)

    def get_params(self) -> dict[str, Any]:
        return {"ops": self.sample_ops()}

    def apply(self, img: np.ndarray, ops: Sequence[AppliedOp] = (), **params: Any) -> np.ndarray:
        check_uint8_rgb(img, "RandAugment")
        for op in ops:
            img = apply_op(img, op.name, op.arg, self.fill, self.interpolation)
        self.last_ops = list(ops)
        return img


def randaugment(n: int = 2, m: float = 9.0, magnitude_std: float = 0.0) -> RandAugment:
    """RandAugment (Cubuk et al. 2019): n ops from 14 at magnitude m on a 0..30 scale."""
    return RandAugment(n=n, m=m, magnitude_std=magnitude_std)
