"""DenseNet (Huang et al. 2017, "Densely Connected Convolutional Networks") as transferkit
backbones: ``forward`` returns pooled features ``[N, num_features]``, there is no classifier.

Inside a dense block every layer reads the concatenation of all earlier feature maps and adds
``growth_rate`` new ones, so features are reused rather than relearned. Each layer is the
"DenseNet-B" bottleneck BN-ReLU-1x1 conv (to ``bn_size * growth_rate`` = 4k channels, which
bounds the cost of the 3x3 however wide the concatenation grows) then BN-ReLU-3x3 conv (to k).
Between blocks a transition ("DenseNet-C") keeps half the channels (compression 0.5) with
BN-ReLU-1x1 and halves the resolution with 2x2 average pooling.

Names match torchvision's (features.conv0, features.denseblock1.denselayer1.norm1, ...).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from .blocks import init_conv_bn
from .weights import IMAGENET_CONFIG, fill_batch_counters, load_imagenet

# old torchvision checkpoints (densenet121-a639ec97.pth among them) name the dense-layer parts
# "norm.1", "conv.2" instead of "norm1", "conv2"; the pattern of torchvision's _load_state_dict
_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 (bottleneck), BN-ReLU-3x3: ``growth_rate`` new feature maps."""

    def __init__(self, cin: int, growth_rate: int, bn_size: int, memory_efficient: bool) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.memory_efficient = memory_efficient

    def bottleneck(self, inputs: tuple[torch.Tensor, ...], update_stats: bool = True) -> torch.Tensor:
        x = torch.cat(inputs, 1)
        norm = self.norm1
        if norm.training and not update_stats:
            # the same normalisation by batch statistics; the running ones it updates are copies
            # (not None: the recomputation must save the same tensors as the first pass did)
            stats = (norm.running_mean.clone(), norm.running_var.clone())
            x = F.batch_norm(x, *stats, norm.weight, norm.bias, True, 0.0, norm.eps)
        else:
            x = norm(x)
        return self.conv1(self.relu1(x))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        # parameters too: below a frozen stem the inputs need no gradient, this layer's weights do
        needs_grad = any(t.requires_grad for t in inputs) or any(p.requires_grad for p in self.parameters())
        if self.memory_efficient and torch.is_grad_enabled() and needs_grad:
            # The concatenation and its BN-ReLU-1x1 are what make memory quadratic in depth: each
            # layer would store its own copy of everything before it. Checkpointing recomputes
            # them in the backward pass instead (Pleiss et al. 2017, "Memory-Efficient
            # Implementation of DenseNets"). The recomputation must not update norm1's running
            # statistics a second time (torchvision's does; then they drift from the plain model's).
            calls = []

            def bottleneck(*xs: torch.Tensor) -> torch.Tensor:
                calls.append(None)
                return self.bottleneck(xs, update_stats=len(calls) == 1)

            hidden = cp.checkpoint(bottleneck, *inputs, use_reentrant=False)
        else:
            hidden = self.bottleneck(tuple(inputs))
        return self.conv2(self.relu2(self.norm2(hidden)))


class DenseBlock(nn.ModuleDict):
    """``layers`` dense layers; layer i reads ``cin + i * growth_rate`` channels."""

    def __init__(self, layers: int, cin: int, growth_rate: int, bn_size: int, memory_efficient: bool) -> None:
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth_rate, growth_rate, bn_size, memory_efficient))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a list, concatenated by each layer, rather than a growing tensor copied at every step
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 to ``cout`` channels, 2x2 average pooling: between two dense blocks."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(cin))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(cin, cout, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, stride=2))


class DenseNet(nn.Module):
    """A DenseNet without its classifier. Stem: 7x7/2 convolution, BN, ReLU, 3x3/2 max-pool;
    then the dense blocks with transitions between them; then a final BN (``norm5``), the ReLU
    and global average pooling. ``memory_efficient``: checkpointed bottlenecks."""

    def __init__(
        self,
        growth_rate: int,
        block_config: tuple[int, ...],
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
        self.num_blocks = len(block_config)
        self.num_features = channels
        self.data_config = dict(IMAGENET_CONFIG)
        # Kaiming fan_out like the ResNets here; torchvision's DenseNet uses fan_in. Either keeps
        # activations at unit scale through ReLUs; ImageNet weights replace it
        init_conv_bn(self)

    @property
    def stages(self) -> list[nn.Module]:
        """Input to output, for stage-wise freezing: the stem (conv0, norm0), then each dense
        block with the transition after it, the last one with the final BN ``norm5``."""
        f = self.features
        out: list[nn.Module] = [nn.ModuleList([f.conv0, f.norm0])]
        for i in range(1, self.num_blocks + 1):
            after = f.get_submodule(f"transition{i}") if i < self.num_blocks else f.norm5
            out.append(nn.ModuleList([f.get_submodule(f"denseblock{i}"), after]))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # norm5 has no ReLU module of its own (torchvision's layout): applied here, before pooling
        x = F.relu(self.features(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A torchvision DenseNet checkpoint, minus its ``classifier``; old files' key names and
        missing ``num_batches_tracked`` counters are brought up to date."""
        out = {}
        for key, value in state.items():
            if key.startswith("classifier."):
                continue
            match = _OLD_KEY.match(key)
            out[match.group(1) + match.group(2) if match else key] = value
        return fill_batch_counters(self, out)


def _densenet(
    name: str, growth_rate: int, blocks: tuple[int, int, int, int], init: int, pretrained: bool, memory_efficient: bool
) -> DenseNet:
    model = DenseNet(growth_rate, blocks, init, memory_efficient=memory_efficient)
    return load_imagenet(model, name) if pretrained else model


def densenet121(pretrained: bool = False, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-121 (Huang et al. 2017): k=32, blocks [6, 12, 24, 16], 1024 features, torchvision-compatible."""
    return _densenet("densenet121", 32, (6, 12, 24, 16), 64, pretrained, memory_efficient)


def densenet161(pretrained: bool = False, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-161 (Huang et al. 2017): k=48, blocks [6, 12, 36, 24], 96-channel stem, 2208 features, torchvision-compatible."""
    return _densenet("densenet161", 48, (6, 12, 36, 24), 96, pretrained, memory_efficient)


def densenet169(pretrained: bool = False, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-169 (Huang et al. 2017): k=32, blocks [6, 12, 32, 32], 1664 features, torchvision-compatible."""
    return _densenet("densenet169", 32, (6, 12, 32, 32), 64, pretrained, memory_efficient)


def densenet201(pretrained: bool = False, memory_efficient: bool = False) -> DenseNet:
    """DenseNet-201 (Huang et al. 2017): k=32, blocks [6, 12, 48, 32], 1920 features, torchvision-compatible."""
    return _densenet("densenet201", 32, (6, 12, 48, 32), 64, pretrained, memory_efficient)
