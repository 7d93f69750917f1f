"""ResNet and ResNeXt backbones (He et al. 2015/2016; Xie et al. 2017), as transferkit backbones:
``forward`` returns pooled features, ``stages`` are the stem and the four residual stages.

Stem: 7x7/2 convolution, BN, ReLU, 3x3/2 max-pool. Stages 1-4 have 64, 128, 256, 512 "planes"
(x4 channels out in bottleneck blocks); stages 2-4 start with stride 2. Names match torchvision,
so ``adapt_state_dict`` only has to drop the ImageNet classifier (``fc``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .blocks import BasicBlock, Bottleneck

IMAGENET_CONFIG = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "input_size": (3, 224, 224)}


class ResNet(nn.Module):
    """A residual network without its classifier.

    ``zero_init_residual``: the last BN of each residual branch starts at gamma = 0, so each block
    starts as the identity and Var(F(x) + x) = Var(x) at initialisation (Goyal et al. 2017).
    ``preact``: pre-activation blocks (He et al. 2016, v2) with a final BN-ReLU before pooling.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        groups: int = 1,
        width_per_group: int = 64,
        zero_init_residual: bool = False,
        preact: bool = False,
    ) -> None:
        super().__init__()
        self.preact = preact
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        stages = []
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for i in range(count):
                stride = 2 if index > 0 and i == 0 else 1
                blocks.append(block(channels, planes, stride, groups, width_per_group, preact))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        # v2 normalises the sum of the last block before pooling
        self.final_norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True)) if preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels
        self.data_config = dict(IMAGENET_CONFIG)
        self._init_weights(zero_init_residual)

    @property
    def stages(self) -> list[nn.Module]:
        stem = nn.ModuleList([self.conv1, self.bn1])
        last = [nn.ModuleList([self.layer4, self.final_norm])] if self.final_norm is not None else [self.layer4]
        return [stem, self.layer1, self.layer2, self.layer3, *last]

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. 2015 ("Delving Deep into Rectifiers"): keeps activation variance through ReLUs
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)) and m.last_norm() is not None:
                    nn.init.zeros_(m.last_norm().weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.final_norm(x) if self.final_norm is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A torchvision ResNet checkpoint, minus its ImageNet classifier."""
        return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _checked(pretrained: bool, name: str) -> None:
    if pretrained:
        raise ValueError(
            f"{name}: ask for ImageNet weights with backbone.weights = \"imagenet\" (transferkit resolves the"
            " torchvision checkpoint), or give a file path"
        )


def _build(name: str, block: Any, layers: tuple[int, int, int, int], pretrained: bool, **params: Any) -> ResNet:
    _checked(pretrained, name)
    return ResNet(block, layers, **params)


def resnet18(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]."""
    return _build("resnet18", BasicBlock, (2, 2, 2, 2), pretrained, zero_init_residual=zero_init_residual, preact=preact)


def resnet34(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3]."""
    return _build("resnet34", BasicBlock, (3, 4, 6, 3), pretrained, zero_init_residual=zero_init_residual, preact=preact)


def resnet50(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNet-50: bottlenecks [3, 4, 6, 3]."""
    return _build("resnet50", Bottleneck, (3, 4, 6, 3), pretrained, zero_init_residual=zero_init_residual, preact=preact)


def resnet101(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNet-101: bottlenecks [3, 4, 23, 3]."""
    return _build("resnet101", Bottleneck, (3, 4, 23, 3), pretrained, zero_init_residual=zero_init_residual, preact=preact)


def resnet152(pretrained: bool = False, zero_init_residual: bool = False, preact: bool = False) -> ResNet:
    """ResNet-152: bottlenecks [3, 8, 36, 3]."""
    return _build("resnet152", Bottleneck, (3, 8, 36, 3), pretrained, zero_init_residual=zero_init_residual, preact=preact)


def resnext50_32x4d(pretrained: bool = False, zero_init_residual: bool = False) -> ResNet:
    """ResNeXt-50 32x4d: ResNet-50's plan, 32 groups of width 4 in the 3x3."""
    return _build("resnext50_32x4d", Bottleneck, (3, 4, 6, 3), pretrained, groups=32, width_per_group=4, zero_init_residual=zero_init_residual)


def resnext101_32x8d(pretrained: bool = False, zero_init_residual: bool = False) -> ResNet:
    """ResNeXt-101 32x8d."""
    return _build("resnext101_32x8d", Bottleneck, (3, 4, 23, 3), pretrained, groups=32, width_per_group=8, zero_init_residual=zero_init_residual)


def resnext101_64x4d(pretrained: bool = False, zero_init_residual: bool = False) -> ResNet:
    """ResNeXt-101 64x4d."""
    return _build("resnext101_64x4d", Bottleneck, (3, 4, 23, 3), pretrained, groups=64, width_per_group=4, zero_init_residual=zero_init_residual)
