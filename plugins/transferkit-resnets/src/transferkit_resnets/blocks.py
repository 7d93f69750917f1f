"""Residual blocks: He et al. 2015 ("Deep Residual Learning for Image Recognition"), He et al.
2016 ("Identity Mappings in Deep Residual Networks", the pre-activation "v2" block) and Xie et
al. 2017 ("Aggregated Residual Transformations for Deep Neural Networks", ResNeXt).

A block computes ``y = F(x) + shortcut(x)``. The shortcut is the identity, or a strided 1x1
convolution (+ BN) when the shape changes, "option B" of the 2015 paper: projections only where
needed, because identity shortcuts cost nothing and keep the signal path clean.

Attribute names follow torchvision (conv1, bn1, ..., downsample.0/.1), so its checkpoints load
unchanged. In the pre-activation variant ``bnK`` is the norm that comes *before* ``convK``.
"""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    # no bias: every convolution is followed (or, pre-activation, preceded) by a BN with its own shift
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def projection(cin: int, cout: int, stride: int, preact: bool) -> nn.Sequential | None:
    """The shortcut: None (identity) when the shape is kept, otherwise a strided 1x1 convolution.

    Post-activation blocks normalise the projection like every other convolution. In the
    pre-activation block the projection reads the already normalised input and its output is
    summed unnormalised, like the identity, so it is the convolution alone (He et al. 2016)."""
    if stride == 1 and cin == cout:
        return None
    if preact:
        return nn.Sequential(conv1x1(cin, cout, stride))
    return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


class ResidualBlock(nn.Module):
    """What the two blocks share: the shortcut, the two orders of operations, zero-init."""

    expansion = 1
    preact: bool
    downsample: nn.Sequential | None

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) of a post-activation block; its last BN has no ReLU after it."""
        raise NotImplementedError

    def residual_preact(self, pre: torch.Tensor) -> torch.Tensor:
        """F(x) of a pre-activation block, given pre = ReLU(BN(x)); ends in a convolution."""
        raise NotImplementedError

    def last_layer(self) -> nn.Module:
        """The last layer of F: its BN (post-activation) or its convolution (pre-activation)."""
        raise NotImplementedError

    def zero_init_last(self) -> None:
        """Make F(x) = 0 at initialisation, so the block starts as its shortcut: the sum
        F(x) + x then has the variance of x however deep the network is (Goyal et al. 2017,
        "Accurate, Large Minibatch SGD"). Post-activation: the last BN's gamma is 0.
        Pre-activation has no BN at the end of F, so its last convolution starts at 0."""
        nn.init.zeros_(self.last_layer().weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            # v2: BN-ReLU before the convolutions; the sum is left alone, so the identity path
            # from any block to any later one is a plain sum (the paper's Eq. 4)
            pre = self.relu(self.bn1(x))
            shortcut = x if self.downsample is None else self.downsample(pre)
            return self.residual_preact(pre) + shortcut
        # v1: convolution-BN-ReLU, ReLU after the sum
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + shortcut)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions, the block of ResNet-18/34 (He et al. 2015, Fig. 5 left)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64, preact: bool = False) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("the basic block has no grouped or widened variant; use a bottleneck ResNet/ResNeXt")
        self.preact = preact
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(cin if preact else planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, planes, stride, preact)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def residual_preact(self, pre: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.bn2(self.conv1(pre))))

    def last_layer(self) -> nn.Module:
        return self.conv2 if self.preact else self.bn2


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3, 1x1 expand (x4): the block of ResNet-50/101/152 (He et al. 2015, Fig. 5
    right) and, with a grouped 3x3, of ResNeXt (Xie et al. 2017, Fig. 3c).

    The stride sits on the 3x3, not on the first 1x1 ("ResNet v1.5", as in torchvision): a
    strided 1x1 would simply skip three quarters of its input positions.

    ResNeXt's cardinality C and bottleneck width d: the 3x3 is C parallel paths of d channels,
    done as one convolution with C groups, ``width = C * d * planes / 64``. "32x4d" on ResNet-50's
    plan has width 128 in the first stage, against ResNet-50's 64, at about the same cost."""

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

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def residual_preact(self, pre: torch.Tensor) -> torch.Tensor:
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.conv3(self.relu(self.bn3(out)))

    def last_layer(self) -> nn.Module:
        return self.conv3 if self.preact else self.bn3


def init_conv_bn(model: nn.Module) -> None:
    """He et al. 2015 ("Delving Deep into Rectifiers"): std = sqrt(2 / fan) keeps the variance
    through ReLUs; fan_out preserves it in the backward pass, as torchvision's ResNets do. BatchNorms
    start as the identity (gamma 1, beta 0)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
