"""transferkit-augment: RandAugment, Cutout, colour jitter and PCA lighting (albumentations, per
image) and Mixup / CutMix (torch, per batch) for transferkit.

The transferkit hooks live in ``transferkit_augment.plugin``; the classes below work on their own
(in any albumentations ``Compose``, or on any batch of tensors).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module of this package that defines it (imported on first use, so loading
# the transferkit plugin imports no torch)
_LAZY = {
    "ColorJitter": "color",
    "PCALighting": "color",
    "color_jitter": "color",
    "pca_lighting": "color",
    "Cutout": "cutout",
    "cutout": "cutout",
    "CutMix": "mixing",
    "Mixup": "mixing",
    "MixupCutmix": "mixing",
    "cutmix": "mixing",
    "mixup": "mixing",
    "mixup_cutmix": "mixing",
    "OPS": "randaugment",
    "RandAugment": "randaugment",
    "apply_op": "randaugment",
    "randaugment": "randaugment",
}

__all__ = [
    "ColorJitter",
    "CutMix",
    "Cutout",
    "Mixup",
    "MixupCutmix",
    "OPS",
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


def __getattr__(name: str) -> Any:  # PEP 562: a name imports its module on first use
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """``cutout`` and ``randaugment`` are both a module and the function it defines: importing the
    module sets it on the package, where the function (what ``from transferkit_augment import
    cutout`` always gave) is kept instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .color import ColorJitter, PCALighting, color_jitter, pca_lighting
    from .cutout import Cutout, cutout
    from .mixing import CutMix, Mixup, MixupCutmix, cutmix, mixup, mixup_cutmix
    from .randaugment import OPS, RandAugment, apply_op, randaugment
