"""``acme/posterize_noise``: a cheap sensor's picture, as an image-level augmentation.

With probability ``p``: add Gaussian noise of standard deviation ``noise`` grey levels to every
pixel, then keep only the top ``bits`` bits of each channel (posterize), so the model sees banded,
grainy versions of its training images. ``bits=8, noise=0`` leaves the image unchanged.

An albumentations 2 ``ImageOnlyTransform`` on uint8 HWC RGB arrays. transferkit places it after
the random resized crop and flip and before normalisation, and gives every transform of the
pipeline one seeded generator; the transform draws only from ``self.py_random`` (whether to apply,
inside albumentations) and ``self.random_generator`` (the noise), so a seeded run is reproducible.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np


def _check(bits: Any, noise: Any, p: Any) -> None:
    """Reject bad parameters with a message that names the parameter and what is allowed."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits: must be an integer from 1 to 8 (bits kept per channel; 8 keeps all), got {bits!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= noise <= 64.0:
        raise ValueError(f"noise: must be a number from 0 to 64 (std of the noise in grey levels), got {noise!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p: must be a probability from 0 to 1, got {p!r}")


class PosterizeNoise(A.ImageOnlyTransform):
    """Gaussian noise (std ``noise`` grey levels), then keep the top ``bits`` bits per channel."""

    def __init__(self, bits: int = 4, noise: float = 8.0, p: float = 0.5) -> None:
        _check(bits, noise, p)
        super().__init__(p=float(p))
        self.bits = int(bits)
        self.noise = float(noise)

    @property
    def mask(self) -> int:
        """The bit mask that keeps the top ``bits`` bits of a uint8 value (bits=4: 0b11110000)."""
        return (0xFF << (8 - self.bits)) & 0xFF

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Draw the noise for this image from the transform's own generator."""
        if self.noise == 0.0:
            return {"noise_map": None}
        shape = tuple(params["shape"][:2]) + (3,)
        return {"noise_map": self.random_generator.normal(0.0, self.noise, size=shape).astype(np.float32)}

    def apply(self, img: np.ndarray, noise_map: np.ndarray | None = None, **params: Any) -> np.ndarray:
        """uint8 HWC RGB in, uint8 HWC RGB of the same shape out."""
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"acme/posterize_noise expects a uint8 HWC RGB image (before Normalize), got {img.dtype} {img.shape}")
        if noise_map is not None:
            img = np.clip(np.rint(img.astype(np.float32) + noise_map), 0, 255).astype(np.uint8)
        return img & np.uint8(self.mask)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """For ``repr`` and albumentations serialisation."""
        return ("bits", "noise")


def posterize_noise(bits: int = 4, noise: float = 8.0, p: float = 0.5) -> PosterizeNoise:
    """Gaussian noise (std noise grey levels), then keep the top bits bits of each channel, with probability p."""
    return PosterizeNoise(bits=bits, noise=noise, p=p)
