"""ResNet (He et al. 2015, "Deep Residual Learning for Image Recognition"; He et al. 2016,
"Identity Mappings in Deep Residual Networks") and ResNeXt (Xie et al. 2017) as transferkit
backbones: ``forward`` returns pooled features ``[N, num_features]``, there is no classifier.

The plan (the 2015 paper's Table 1): a stem, 7x7/2 convolution, BN, ReLU and 3x3/2 max-pool,
takes 224 px to 56 px; four stages of residual blocks follow, with 64, 128, 256 and 512 "planes"
(x4 channels out of a bottleneck block), each after the first starting with stride 2, so each
stage halves the resolution and doubles the width. Global average pooling ends it.

Names match torchvision's, so ``adapt_state_dict`` only has to drop the classifier (``fc``).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BasicBlock, Bottleneck, ResidualBlock, init_conv_bn
from .weights import IMAGENET_CONFIG, fill_batch_counters, load_imagenet

Layers = tuple[int, int, int, int]


class ResNet(nn.Module):
    """A residual network without its classifier.

    ``zero_init_residual``: each residual branch starts at zero, so every block starts as its
    shortcut and Var(F(x) + x) = Var(x) at initialisation (see ``ResidualBlock.zero_init_last``).
    ``preact``: pre-activation blocks (He et al. 2016, "v2"), with the BN-ReLU that the last sum
    then needs (``final_norm``) before pooling. There are no ImageNet weights for this variant.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Layers,
        *,
        groups: int = 1,
        width_per_group: int = 64,
        zero_init_residual: bool = False,
        preact: bool = False,
    ) -> None:
        super().__init__()
        self.preact = preact
        # the stem is the same in both variants; its BN-ReLU comes before the max-pool, so the
        # first pre-activation block's own BN-ReLU is not a repeat of it
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        stages = []
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for i in range(count):
                # the first block of stages 2-4 halves the resolution (stage 1 follows the max-pool)
                stride = 2 if index > 0 and i == 0 else 1
                blocks.append(block(channels, planes, stride, groups, width_per_group, preact))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        # v2 leaves every sum unnormalised; the features need one last BN-ReLU before pooling
        self.final_norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True)) if preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels
        self.data_config = dict(IMAGENET_CONFIG)
        self._init_weights(zero_init_residual)

    @property
    def stages(self) -> list[nn.Module]:
        """Input to output, for stage-wise freezing: the stem (conv1, bn1), then layer1..layer4
        (layer4 with the final BN-ReLU of the pre-activation variant)."""
        stem = nn.ModuleList([self.conv1, self.bn1])
        last = nn.ModuleList([self.layer4, self.final_norm]) if self.final_norm is not None else self.layer4
        return [stem, self.layer1, self.layer2, self.layer3, last]

    def _init_weights(self, zero_init_residual: bool) -> None:
        init_conv_bn(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    m.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, ``[N, num_features, H/32, W/32]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.final_norm(x) if self.final_norm is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A torchvision ResNet/ResNeXt checkpoint, minus its ImageNet classifier ``fc``."""
        return fill_batch_counters(self, {k: v for k, v in state.items() if not k.startswith("fc.")})


def _build(
    name: str,
    block: type[BasicBlock] | type[Bottleneck],
    layers: Layers,
    pretrained: bool,
    *,
    groups: int = 1,
    width_per_group: int = 64,
    zero_init_residual: bool = False,
    preact: bool = False,
) -> ResNet:
    if pretrained and preact:
        raise ValueError(f"{name}: there are no ImageNet weights for the pre-activation variant (preact=True)")
    model = ResNet(
        block, layers, groups=groups, width_per_group=width_per_group, zero_init_residual=zero_init_residual, preact=preact
    )
    return load_imagenet(model, name) if pretrained else model


def resnet18(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNet-18 (He et al. 2015): basic blocks [2, 2, 2, 2], 512 features, torchvision-compatible."""
    return _build("resnet18", BasicBlock, (2, 2, 2, 2), pretrained, zero_init_residual=zero_init_residual, preact=preact)


def resnet34(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNet-34 (He et al. 2015): basic blocks [3, 4, 6, 3], 512 features, torchvision-compatible."""
    return _build("resnet34", BasicBlock, (3, 4, 6, 3), pretrained, zero_init_residual=zero_init_residual, preact=preact)


def resnet50(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNet-50 (He et al. 2015, v1.5): bottlenecks [3, 4, 6, 3], 2048 features, torchvision-compatible."""
    return _build("resnet50", Bottleneck, (3, 4, 6, 3), pretrained, zero_init_residual=zero_init_residual, preact=preact)


def resnet101(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNet-101 (He et al. 2015, v1.5): bottlenecks [3, 4, 23, 3], 2048 features, torchvision-compatible."""
    return _build("resnet101", Bottleneck, (3, 4, 23, 3), pretrained, zero_init_residual=zero_init_residual, preact=preact)


def resnet152(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNet-152 (He et al. 2015, v1.5): bottlenecks [3, 8, 36, 3], 2048 features, torchvision-compatible."""
    return _build("resnet152", Bottleneck, (3, 8, 36, 3), pretrained, zero_init_residual=zero_init_residual, preact=preact)


def resnext50_32x4d(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2017): ResNet-50's plan, 3x3 in 32 groups of 4, torchvision-compatible."""
    return _build(
        "resnext50_32x4d", Bottleneck, (3, 4, 6, 3), pretrained,
        groups=32, width_per_group=4, zero_init_residual=zero_init_residual, preact=preact,
    )


def resnext101_32x8d(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNeXt-101 32x8d (Xie et al. 2017): ResNet-101's plan, 3x3 in 32 groups of 8, torchvision-compatible."""
    return _build(
        "resnext101_32x8d", Bottleneck, (3, 4, 23, 3), pretrained,
        groups=32, width_per_group=8, zero_init_residual=zero_init_residual, preact=preact,
    )


def resnext101_64x4d(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNeXt-101 64x4d (Xie et al. 2017): ResNet-101's plan, 3x3 in 64 groups of 4, torchvision-compatible."""
    return _build(
        "resnext101_64x4d", Bottleneck, (3, 4, 23, 3), pretrained,
        groups=64, width_per_group=4, zero_init_residual=zero_init_residual, preact=preact,
    )
