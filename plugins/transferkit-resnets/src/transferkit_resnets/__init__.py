"""transferkit-resnets: ResNet (He et al. 2015/2016), ResNeXt (Xie et al. 2017) and DenseNet
(Huang et al. 2017) backbones, parameter-for-parameter compatible with torchvision's."""

from .densenet import DenseNet, densenet121, densenet161, densenet169, densenet201
from .resnet import (
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    resnext101_32x8d,
    resnext101_64x4d,
)
from .weights import IMAGENET1K_V1

__all__ = [
    "DenseNet", "ResNet", "IMAGENET1K_V1",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
]
