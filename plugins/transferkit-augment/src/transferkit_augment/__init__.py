"""transferkit-augment: RandAugment, Cutout, colour jitter and PCA lighting (albumentations, per
image) and Mixup / CutMix (torch, per batch) for transferkit.

The transferkit hooks live in ``transferkit_augment.plugin``; the classes below work on their own
(in any albumentations ``Compose``, or on any batch of tensors).
"""

from .color import ColorJitter, PCALighting, color_jitter, pca_lighting
from .cutout import Cutout, cutout
from .mixing import CutMix, Mixup, MixupCutmix, cutmix, mixup, mixup_cutmix
from .randaugment import OPS, RandAugment, apply_op, randaugment

__version__ = "0.1.0"

__all__ = [
    "OPS",
    "ColorJitter",
    "CutMix",
    "Cutout",
    "Mixup",
    "MixupCutmix",
    "PCALighting",
    "RandAugment",
    "apply_op",
    "color_jitter",
    "cutmix",
    "cutout",
    "mixup",
    "mixup_cutmix",
    "pca_lighting",
    "randaugment",
]
