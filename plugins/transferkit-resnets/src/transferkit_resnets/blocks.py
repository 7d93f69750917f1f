"""Residual blocks (He et al. 2015, "Deep Residual Learning"; 2016, "Identity Mappings in Deep
Residual Networks"; Xie et al. 2017, "Aggregated Residual Transformations").

A block computes ``y = F(x) + shortcut(x)``. The shortcut is the identity, or a strided 1x1
convolution + BN when the shape changes ("option B" of the 2015 paper). Attribute names follow
torchvision (conv1, bn1, ..., downsample.0/.1), so its checkpoints load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def projection(cin: int, cout: int, stride: int, preact: bool) -> nn.Module | None:
    """The shortcut when the shape changes; in the pre-activation block the input is already
    normalised, so the projection is the convolution alone."""
    if stride == 1 and cin == cout:
        return None
    if preact:
        return nn.Sequential(conv1x1(cin, cout, stride))
    return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34). ``preact``: BN-ReLU before each convolution (v2)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64, preact: bool = False) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("the basic block has no grouped or widened variant; use a bottleneck ResNet/ResNeXt")
        self.preact = preact
        self.bn1 = nn.BatchNorm2d(cin if preact else planes)
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, planes, stride, preact)

    def last_norm(self) -> nn.BatchNorm2d | None:
        return None if self.preact else self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            pre = self.relu(self.bn1(x))
            shortcut = x if self.downsample is None else self.downsample(pre)
            out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
            return out + shortcut
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride here, as in "ResNet v1.5"; grouped for ResNeXt) -> 1x1 expand x4.

    ResNeXt's cardinality C and bottleneck width d: the 3x3 has ``C`` groups of ``d`` channels
    (``width = planes * d / 64 * C``), e.g. 32x4d on ResNet-50's plan."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64, preact: bool = False) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out = planes * self.expansion
        self.preact = preact
        self.conv1 = conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(cin if preact else width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out)
        self.bn3 = nn.BatchNorm2d(width if preact else out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, out, stride, preact)

    def last_norm(self) -> nn.BatchNorm2d | None:
        return None if self.preact else self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            pre = self.relu(self.bn1(x))
            shortcut = x if self.downsample is None else self.downsample(pre)
            out = self.conv1(pre)
            out = self.conv2(self.relu(self.bn2(out)))
            out = self.conv3(self.relu(self.bn3(out)))
            return out + shortcut
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)
