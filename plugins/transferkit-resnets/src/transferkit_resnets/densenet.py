"""DenseNet backbones (Huang et al. 2017, "Densely Connected Convolutional Networks").

Inside a dense block every layer sees the concatenation of all earlier feature maps and adds
``growth_rate`` new ones. Each layer is the "DenseNet-B" bottleneck BN-ReLU-1x1 (to
``bn_size * growth_rate`` channels) then BN-ReLU-3x3 (to ``growth_rate``). Between blocks a
transition ("DenseNet-C") halves the channels (compression 0.5) with BN-ReLU-1x1 and halves the
resolution with 2x2 average pooling. Names match torchvision's (features.denseblock1.denselayer1...).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from .resnet import IMAGENET_CONFIG, _checked

# old torchvision checkpoints name dense-layer parts "norm.1" instead of "norm1"
_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth_rate: int, bn_size: int, memory_efficient: bool) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.memory_efficient = memory_efficient

    def bottleneck(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and any(t.requires_grad for t in inputs) and torch.is_grad_enabled():
            # recompute the concatenation + 1x1 in backward instead of storing it: memory grows
            # linearly, not quadratically, with depth (Pleiss et al. 2017)
            hidden = cp.checkpoint(self.bottleneck, *inputs, use_reentrant=False)
        else:
            hidden = self.bottleneck(*inputs)
        return self.conv2(self.relu2(self.norm2(hidden)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, cin: int, growth_rate: int, bn_size: int, memory_efficient: bool) -> None:
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth_rate, growth_rate, bn_size, memory_efficient))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(cin))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(cin, cout, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, stride=2))


class DenseNet(nn.Module):
    """A DenseNet without its classifier; ``stages``: stem, then each dense block with the
    transition after it (the last with the final BN)."""

    def __init__(
        self,
        growth_rate: int,
        block_config: tuple[int, int, int, int],
        num_init_features: int,
        bn_size: int = 4,
        compression: float = 0.5,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
        channels = num_init_features
        for i, layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(layers, channels, growth_rate, bn_size, memory_efficient))
            channels += layers * growth_rate
            if i < len(block_config) - 1:
                out = int(channels * compression)
                self.features.add_module(f"transition{i + 1}", Transition(channels, out))
                channels = out
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.num_features = channels
        self.data_config = dict(IMAGENET_CONFIG)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def stages(self) -> list[nn.Module]:
        f = self.features
        out: list[nn.Module] = [nn.ModuleList([f.conv0, f.norm0])]
        for i in range(1, 5):
            parts = [f.get_submodule(f"denseblock{i}")]
            parts.append(f.get_submodule(f"transition{i}") if i < 4 else f.norm5)
            out.append(nn.ModuleList(parts))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A torchvision DenseNet checkpoint, old key style included, minus its classifier."""
        out = {}
        for key, value in state.items():
            if key.startswith("classifier."):
                continue
            match = _OLD_KEY.match(key)
            out[match.group(1) + match.group(2) if match else key] = value
        return out


def _densenet(name: str, growth: int, blocks: tuple[int, int, int, int], init: int, pretrained: bool, memory_efficient: bool) -> DenseNet:
    _checked(pretrained, name)
    return DenseNet(growth, blocks, init, memory_efficient=memory_efficient)


def densenet121(pretrained: bool = False, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-121: growth 32, blocks [6, 12, 24, 16]."""
    return _densenet("densenet121", 32, (6, 12, 24, 16), 64, pretrained, memory_efficient)


def densenet161(pretrained: bool = False, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-161: growth 48, blocks [6, 12, 36, 24], 96 initial features."""
    return _densenet("densenet161", 48, (6, 12, 36, 24), 96, pretrained, memory_efficient)


def densenet169(pretrained: bool = False, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-169: growth 32, blocks [6, 12, 32, 32]."""
    return _densenet("densenet169", 32, (6, 12, 32, 32), 64, pretrained, memory_efficient)


def densenet201(pretrained: bool = False, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-201: growth 32, blocks [6, 12, 48, 32]."""
    return _densenet("densenet201", 32, (6, 12, 48, 32), 64, pretrained, memory_efficient)
