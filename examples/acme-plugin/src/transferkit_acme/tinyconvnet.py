"""``acme/tinyconvnet``: a small conv-BN-ReLU network written to transferkit's backbone contract.

The contract (docs/plugins.md, "Backbones"): an ``nn.Module`` mapping images
``[N, 3, H, W]`` to pooled features ``[N, num_features]``, with an int ``num_features``;
optionally ``stages`` (a list, input to output, for ``unfreeze = "last:K"``), ``data_config``
(mean, std, input size) and ``adapt_state_dict`` (to read checkpoints in other layouts).

Pretrained weights come from a local file, so the weights story works without a network:
``weights = "imagenet"`` in a recipe makes transferkit call the factory with ``pretrained=True``
(this plugin declares no download URL), and the factory loads :func:`pretrained_path`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from transferkit import IMAGENET_MEAN, IMAGENET_STD

WEIGHTS_ENV = "TRANSFERKIT_ACME_WEIGHTS"
CACHE_DIR = Path("~/.cache/transferkit-acme")


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (no bias: BatchNorm follows), BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class TinyConvNet(nn.Module):
    """A stem and ``depth`` stages; each stage halves the resolution and doubles the channels.

    ``width=16, depth=3``: 16 -> 32 -> 64 -> 128 channels, ``num_features = 128``, about 0.3 M
    parameters; 64-px images become 4x4 maps before global average pooling.
    """

    def __init__(self, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.stem = ConvBNReLU(3, width, stride=2)
        blocks = []
        channels = width
        for _ in range(depth):
            blocks.append(nn.Sequential(ConvBNReLU(channels, 2 * channels, stride=2), ConvBNReLU(2 * channels, 2 * channels)))
            channels *= 2
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels  # required: the width of the pooled features
        self.data_config = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input_size": (3, 64, 64)}
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @property
    def stages(self) -> list[nn.Module]:
        """Stem, then each stage: a plain list (an attribute, not a method), input to output."""
        return [self.stem, *self.blocks]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> ``[N, num_features]``."""
        return self.pool(self.blocks(self.stem(images))).flatten(1)

    def adapt_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept this module's own state dict, or a transferkit run's ``model.safetensors``
        (keys ``backbone.*`` plus the old ``head.*``, which is dropped)."""
        if any(key.startswith("backbone.") for key in state):
            return {key[len("backbone.") :]: value for key, value in state.items() if key.startswith("backbone.")}
        return dict(state)


def pretrained_path(width: int = 16, depth: int = 3) -> Path:
    """Where the pretrained weights are: ``$TRANSFERKIT_ACME_WEIGHTS`` when set, else
    ``~/.cache/transferkit-acme/tinyconvnet-w{width}-d{depth}.safetensors``."""
    override = os.environ.get(WEIGHTS_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    return CACHE_DIR.expanduser() / f"tinyconvnet-w{width}-d{depth}.safetensors"


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file, or a torch state dict read with ``weights_only=True`` (no code runs)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors; save model.state_dict() instead")
    return dict(state)


def load_pretrained(model: TinyConvNet, path: Path) -> None:
    """Load ``path`` into ``model`` strictly, after :meth:`TinyConvNet.adapt_state_dict`."""
    if not path.is_file():
        raise FileNotFoundError(
            f"no pretrained weights at {path}; set {WEIGHTS_ENV}=path/to/weights.safetensors (a transferkit"
            f' run\'s model.safetensors works), or use backbone.weights = "none" or a file path'
        )
    state = model.adapt_state_dict(read_weights(path))
    own = model.state_dict()
    misfits = sorted(set(own) ^ set(state)) + [k for k in own if k in state and own[k].shape != state[k].shape]
    if misfits:
        raise ValueError(
            f"{path} does not fit tinyconvnet(width={model.stem[0].out_channels}, depth={len(model.blocks)})"
            f" ({len(misfits)} keys differ, e.g. {misfits[0]}); check the backbone params width and depth"
        )
    model.load_state_dict(state, strict=True)


def tinyconvnet(pretrained: bool = False, width: int = 16, depth: int = 3) -> TinyConvNet:
    """A small conv-BN-ReLU CNN: a stem and depth stages, channels width x 2**depth."""
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= 256:
        raise ValueError(f"width: must be an integer from 1 to 256 (channels of the stem), got {width!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 6:
        raise ValueError(f"depth: must be an integer from 1 to 6 (stages after the stem), got {depth!r}")
    model = TinyConvNet(width=width, depth=depth)
    if pretrained:
        load_pretrained(model, pretrained_path(width, depth))
    return model
