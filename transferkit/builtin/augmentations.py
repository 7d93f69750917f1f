"""Built-in image-level augmentations: thin, validated wrappers over albumentations."""

from __future__ import annotations

from typing import Callable

import albumentations as A

from ..hookspecs import hookimpl


def hflip(p: float = 0.5) -> A.BasicTransform:
    """Mirror left-right with probability p."""
    return A.HorizontalFlip(p=p)


def vflip(p: float = 0.5) -> A.BasicTransform:
    """Mirror top-bottom with probability p."""
    return A.VerticalFlip(p=p)


def rotate(limit: float = 15.0, p: float = 0.5) -> A.BasicTransform:
    """Rotate by a uniform angle in [-limit, limit] degrees, reflecting at the borders."""
    return A.Rotate(limit=limit, p=p)


def gaussian_blur(sigma_max: float = 1.5, p: float = 0.2) -> A.BasicTransform:
    """Gaussian blur with sigma up to sigma_max."""
    return A.GaussianBlur(sigma_limit=(0.1, sigma_max), blur_limit=0, p=p)


def grayscale(p: float = 0.1) -> A.BasicTransform:
    """Drop colour with probability p (kept 3-channel)."""
    return A.ToGray(num_output_channels=3, p=p)


@hookimpl
def register_augmentations(register: Callable[..., None]) -> None:
    for factory in (hflip, vflip, rotate, gaussian_blur, grayscale):
        register(factory.__name__, factory, description=(factory.__doc__ or "").strip(), kind="image")
