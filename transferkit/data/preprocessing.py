"""Evaluation preprocessing in one place: what training evaluates with, what a run's manifest
records under ``"preprocessing"``, and what inference and export rebuild from that record.

An image (uint8 HWC RGB) is shrunk so its shorter side is ``resize_shorter_side`` (antialiased,
as decoding does before training), resized to that side when smaller, centre-cropped to
``image_size`` and normalised. Training builds it with ``preprocessing_for``; everything that
reads a finished run builds it with ``preprocessing_from_manifest``; both give the same tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import albumentations as A
import numpy as np
import torch

from .decoding import resize_shorter
from .transforms import INTERPOLATION, ImageTransform

DEFAULT_CROP_PCT = 0.875


@dataclass(frozen=True)
class Preprocessing:
    """The deterministic evaluation transform of a run; call it on a uint8 HWC RGB array."""

    image_size: int
    resize_shorter_side: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"

    @cached_property
    def transform(self) -> ImageTransform:
        """Resize (enlarging only; shrinking happened in ``resize``) and centre crop, normalised."""
        steps = [
            A.SmallestMaxSize(max_size=self.resize_shorter_side, interpolation=self._cv2_interpolation),
            A.CenterCrop(self.image_size, self.image_size),
        ]
        return ImageTransform(steps, self.mean, self.std)

    @property
    def steps(self) -> list[Any]:
        return self.transform.steps

    @property
    def _cv2_interpolation(self) -> int:
        return INTERPOLATION.get(self.interpolation, INTERPOLATION["bicubic"])

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """``[3, image_size, image_size]`` float32, normalised."""
        return self.transform(resize_shorter(image, self.resize_shorter_side))

    def resize(self, image: np.ndarray, shorter: int | None = None) -> np.ndarray:
        """The evaluation resize alone: shorter side to ``resize_shorter_side`` (or ``shorter``),
        shrinking antialiased as decoding does, enlarging as the transform does. TTA policies
        crop their views from it."""
        side = shorter or self.resize_shorter_side
        image = resize_shorter(image, side)
        return A.SmallestMaxSize(max_size=side, interpolation=self._cv2_interpolation)(image=image)["image"]

    def views(self, image: np.ndarray, policy: Any) -> torch.Tensor:
        """A test-time augmentation policy's views of one image, ``[V, 3, image_size, image_size]``."""
        views = policy.views(image, self.resize, self.image_size)
        return torch.stack([self.transform.to_tensor(np.ascontiguousarray(v)) for v in views])

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's ``"preprocessing"`` entry (what a consumer outside transferkit needs); the
        interpolation is the manifest's ``data_config["interpolation"]``."""
        return {
            "image_size": self.image_size,
            "resize_shorter_side": self.resize_shorter_side,
            "resize_method": "bicubic, antialiased when shrinking (PIL Image.resize)",  # resize_shorter
            "center_crop": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "channels": "RGB",
            "scale": "pixel / 255",
        }


def preprocessing_for(data_config: dict[str, Any], image_size: int | None, crop_pct: float | None = None) -> Preprocessing:
    """Training's evaluation preprocessing for a backbone's data config and the recipe's
    ``data.image_size`` / ``data.crop_pct`` (the backbone's own values where those are unset)."""
    size = int(image_size or data_config["input_size"][-1])
    pct = float(crop_pct or data_config.get("crop_pct", DEFAULT_CROP_PCT))
    return Preprocessing(
        image_size=size,
        resize_shorter_side=max(size, int(round(size / pct))),
        mean=_floats(data_config["mean"]),
        std=_floats(data_config["std"]),
        interpolation=str(data_config.get("interpolation", "bicubic")),
    )


NATIVE_WITHIN = 0.75  # a training size at least this share of the native one may take the probe's size
# the probe reads the frozen network at 8/7 of its pretrained size (224 -> 256 px, centre crop at the
# backbone's crop_pct): ImageNet training's random-resized crops show objects larger than a centre
# crop of the same size does, so a frozen network sees them at their training scale a little above
# its training size (FixRes, Touvron et al. 2019). benchmarks/PROBE_SIZE.md: phase 1's probe on nine
# held-out folders, mean test top-1 +1.0 point over 224 px, never more than one image lower
PROBE_UPSCALE = 8 / 7


def probe_image_size(data_config: dict[str, Any], image_size: int | None) -> int:
    """Phase 1's size: 8/7 of the backbone's pretrained size (rounded to 8 px; ``PROBE_UPSCALE``)
    when ``image_size`` is unset or lies between ``NATIVE_WITHIN`` of the native size and that;
    else ``image_size``. Phase 2 starts from the probe's head: it carries over from 256-px
    features to 192-px ones, not to 64-px ones (digits at 64 px: the probe fitted at 224 px scored
    0.931 on validation and its interpolations with the fine-tuned model 0.35-0.70)."""
    native = int(data_config["input_size"][-1])
    upscaled = max(native, 8 * round(native * PROBE_UPSCALE / 8))
    if image_size is None or NATIVE_WITHIN * native <= image_size < upscaled:
        return upscaled
    return int(image_size)


def preprocessing_from_manifest(manifest: dict[str, Any]) -> Preprocessing:
    """The preprocessing a finished run evaluated with, from its ``manifest.json`` (used by
    inference and by export)."""
    pre = manifest["preprocessing"]
    size = int(pre["image_size"])
    interpolation = manifest.get("data_config", {}).get("interpolation", "bicubic")
    return Preprocessing(
        image_size=size,
        resize_shorter_side=int(pre.get("resize_shorter_side", size)),
        mean=_floats(pre["mean"]),
        std=_floats(pre["std"]),
        interpolation=str(interpolation),
    )


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)
