"""Built-in image-level augmentations: thin, validated wrappers over albumentations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    import albumentations as A  # imported by each factory: albumentations imports torch (`transferkit list` stays fast)


def hflip(p: float = 0.5) -> A.BasicTransform:
    """Mirror left-right with probability p."""
    import albumentations as A

    return A.HorizontalFlip(p=p)


def vflip(p: float = 0.5) -> A.BasicTransform:
    """Mirror top-bottom with probability p."""
    import albumentations as A

    return A.VerticalFlip(p=p)


def rotate(limit: float = 15.0, p: float = 0.5) -> A.BasicTransform:
    """Rotate by a uniform angle in [-limit, limit] degrees, reflecting at the borders."""
    import albumentations as A

    return A.Rotate(limit=limit, p=p)


def gaussian_blur(sigma_max: float = 1.5, p: float = 0.2) -> A.BasicTransform:
    """Gaussian blur with sigma up to sigma_max."""
    import albumentations as A

    return A.GaussianBlur(sigma_limit=(0.1, sigma_max), blur_limit=0, p=p)


def grayscale(p: float = 0.1) -> A.BasicTransform:
    """Drop colour with probability p (kept 3-channel)."""
    import albumentations as A

    return A.ToGray(num_output_channels=3, p=p)


@hookimpl
def register_augmentations(register: Callable[..., None]) -> None:
    for factory in (hflip, vflip, rotate, gaussian_blur, grayscale):
        register(factory.__name__, factory, description=(factory.__doc__ or "").strip(), kind="image")
