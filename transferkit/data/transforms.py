"""Transforms resolved from the backbone's data config: train = random resized crop + flip (+ the
recipe's image augmentations); eval = resize + centre crop (``preprocessing.Preprocessing``).
Always ends normalised, as a tensor."""

from __future__ import annotations

import random
from typing import Any, Sequence

import albumentations as A
import cv2
import numpy as np
import torch

INTERPOLATION = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}


class ToTensorCHW:
    """uint8 HWC array -> float32 CHW tensor, normalised by mean/std (done in one step)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32) * 255.0
        self.inv_std = 1.0 / (np.asarray(std, dtype=np.float32) * 255.0)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        out = (image.astype(np.float32) - self.mean) * self.inv_std
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


class ImageTransform:
    """albumentations on uint8 arrays, then normalisation to a tensor."""

    def __init__(self, steps: list[Any], mean: Sequence[float], std: Sequence[float], seed: int | None = None) -> None:
        self.pipeline = A.Compose(steps, seed=seed) if steps else None
        self.to_tensor = ToTensorCHW(mean, std)
        self.steps = steps

    def augment(self, image: np.ndarray) -> np.ndarray:
        return self.pipeline(image=image)["image"] if self.pipeline is not None else image

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.to_tensor(self.augment(image))

    def set_seed(self, seed: int) -> None:
        # one shared generator for every step: albumentations' set_random_seed gives each child
        # the same seed, so two p=0.5 steps (hflip, vflip) would always fire together
        if self.pipeline is not None:
            self.pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


def train_steps(size: int, scale: tuple[float, float], hflip: bool, interpolation: str = "bicubic") -> list[Any]:
    interp = INTERPOLATION.get(interpolation, cv2.INTER_CUBIC)
    steps: list[Any] = [A.RandomResizedCrop(size=(size, size), scale=scale, interpolation=interp)]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    return steps


def train_transform(
    data_config: dict[str, Any],
    image_size: int | None,
    *,
    crop_scale: tuple[float, float] = (0.25, 1.0),
    hflip: bool = True,
    image_augs: Sequence[Any] = (),
    seed: int | None = None,
) -> ImageTransform:
    """The training transform for a backbone's data config and the recipe's settings (the
    evaluation one is ``preprocessing.preprocessing_for``)."""
    size = int(image_size or data_config["input_size"][-1])
    interp = str(data_config.get("interpolation", "bicubic"))
    steps = train_steps(size, crop_scale, hflip, interp) + list(image_augs)
    return ImageTransform(steps, data_config["mean"], data_config["std"], seed)
