"""transferkit-resnets: ResNet (He et al. 2015/2016), ResNeXt (Xie et al. 2017) and DenseNet
(Huang et al. 2017) backbones, parameter-for-parameter compatible with torchvision's."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module of this package that defines it (imported on first use, so loading
# the transferkit plugin imports no torch)
_LAZY = {
    "DenseNet": "densenet",
    "densenet121": "densenet",
    "densenet161": "densenet",
    "densenet169": "densenet",
    "densenet201": "densenet",
    "ResNet": "resnet",
    "resnet18": "resnet",
    "resnet34": "resnet",
    "resnet50": "resnet",
    "resnet101": "resnet",
    "resnet152": "resnet",
    "resnext50_32x4d": "resnet",
    "resnext101_32x8d": "resnet",
    "resnext101_64x4d": "resnet",
    "IMAGENET1K_V1": "weights",
}

__all__ = [
    "DenseNet",
    "IMAGENET1K_V1",
    "ResNet",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "resnext50_32x4d",
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


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .densenet import DenseNet, densenet121, densenet161, densenet169, densenet201
    from .resnet import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d, resnext101_32x8d, resnext101_64x4d
    from .weights import IMAGENET1K_V1
