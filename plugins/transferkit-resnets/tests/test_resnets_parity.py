"""Every architecture against torchvision's model of the same name: the same parameter names,
shapes and counts, and the same pooled features (within 1e-5) once torchvision's weights are
loaded into ours.

The names, shapes, counts, stages and output width are those of the full-size networks, built on
the meta device (shapes without storage or initialisation: ResNeXt-101 32x8d's 86.7M parameters
cost nothing). The features are compared on a shallow twin of each: the same blocks with the
same groups and widths, one or two of them per stage (``SHALLOW``), built for ours and for
torchvision from the same constructor arguments. Depth repeats the blocks the twins already
hold, and that the twin is made of the full network's blocks is checked: every parameter it has
has the full network's name and shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import densenet as tv_densenet
from torchvision.models import resnet as tv_resnet

from transferkit.testing import stages_of
from transferkit_resnets import IMAGENET1K_V1, DenseNet
from transferkit_resnets.plugin import BACKBONES
from transferkit_resnets.resnet import ResNet

from resnets_helpers import calibrate_batchnorm, old_style, one_thread  # noqa: F401  (one_thread: autouse fixture)

# torchvision's own count (its weights' meta["num_params"]) minus the ImageNet classifier,
# e.g. ResNet-50: 25,557,032 - (2048 * 1000 + 1000) = 23,508,032
PARAMS = {
    "resnet18": 11_176_512,
    "resnet34": 21_284_672,
    "resnet50": 23_508_032,
    "resnet101": 42_500_160,
    "resnet152": 58_143_808,
    "resnext50_32x4d": 22_979_904,
    "resnext101_32x8d": 86_742_336,
    "resnext101_64x4d": 81_406_272,
    "densenet121": 6_953_856,
    "densenet161": 26_472_000,
    "densenet169": 12_484_480,
    "densenet201": 18_092_928,
}
# blocks per stage of the twins: a ResNet's first stage keeps a block with an identity shortcut
# after its first (stride 1; a bottleneck's first has a projection), the later stages start with
# stride 2 and a projection; two dense layers per block concatenate more than one input
SHALLOW = {ResNet: (2, 1, 1, 1), DenseNet: (2, 2, 2, 2)}


@dataclass
class Pair:
    name: str
    ours: nn.Module  # full size, on the meta device, torchvision's checkpoint loaded (by name and shape)
    reference: nn.Module  # torchvision's, full size, on the meta device, classifier replaced by nn.Identity
    classifier_keys: set[str]
    checkpoint_keys: dict[str, tuple[int, ...]]  # name -> shape
    out_shape: tuple[int, ...]  # of ours, on a batch of 2 at 64 px


def drop_classifier(reference: nn.Module) -> set[str]:
    attr = "fc" if hasattr(reference, "fc") else "classifier"
    keys = {f"{attr}.{k}" for k in getattr(reference, attr).state_dict()}
    setattr(reference, attr, nn.Identity())
    return keys


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module", params=list(IMAGENET1K_V1))
def pair(request) -> Pair:
    name = request.param
    with torch.device("meta"):
        reference = torchvision.models.get_model(name, weights=None)
        ours = BACKBONES[name]()
    checkpoint = reference.state_dict()  # as torchvision's files hold it, classifier included
    ours.load_state_dict(ours.adapt_state_dict(checkpoint), strict=True)
    classifier_keys = drop_classifier(reference)
    with torch.no_grad():
        out = ours.eval()(torch.empty(2, 3, 64, 64, device="meta"))
    return Pair(name, ours, reference, classifier_keys, {k: tuple(v.shape) for k, v in checkpoint.items()}, tuple(out.shape))


def twins(full: nn.Module) -> tuple[nn.Module, nn.Module]:
    """Ours and torchvision's network of ``full``'s blocks (its kind, groups, widths, growth rate,
    stem) at ``SHALLOW`` depth."""
    if isinstance(full, ResNet):
        block = full.layer1[0]
        groups = block.conv2.groups
        width = 64 if type(block).__name__ == "BasicBlock" else block.conv2.in_channels // groups  # stage 1: 64 planes
        layers = SHALLOW[ResNet]
        return (ResNet(type(block), layers, groups=groups, width_per_group=width),
                tv_resnet.ResNet(getattr(tv_resnet, type(block).__name__), list(layers), groups=groups, width_per_group=width))
    layer = full.features.denseblock1.denselayer1
    growth, stem = layer.conv2.out_channels, full.features.conv0.out_channels
    bn_size = layer.conv1.out_channels // growth
    blocks = SHALLOW[DenseNet]
    return (DenseNet(growth, blocks, stem, bn_size=bn_size),
            tv_densenet.DenseNet(growth_rate=growth, block_config=blocks, num_init_features=stem, bn_size=bn_size))


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_pooled_features_equal_torchvision(pair: Pair) -> None:
    torch.manual_seed(0)
    ours, reference = twins(pair.ours)
    # the twin is made of the full network's blocks: each of its parameters is one of the full
    # network's, name and shape (a DenseNet's only up to its first transition, whose width depends on depth)
    kept = {k: v for k, v in shapes(ours).items() if isinstance(ours, ResNet) or k.startswith(("features.conv0", "features.norm0",
                                                                                                "features.denseblock1."))}
    assert kept and kept.items() <= shapes(pair.ours).items()
    calibrate_batchnorm(reference, torch.randn(2, 3, 64, 64))
    ours.load_state_dict(ours.adapt_state_dict(reference.state_dict()), strict=True)
    drop_classifier(reference)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours_out, reference_out = ours.eval()(x), reference.eval()(x)
    assert ours_out.shape == reference_out.shape == (2, ours.num_features)
    # the features are at a moderate scale (calibrated BNs), so 1e-5 is a tight absolute tolerance
    assert 0.01 < reference_out.abs().mean().item() < 100
    assert (ours_out - reference_out).abs().max().item() < 1e-5


def test_parameter_count_is_torchvision_minus_its_classifier(pair: Pair) -> None:
    assert count(pair.ours) == count(pair.reference) == PARAMS[pair.name]


def test_state_dict_names_are_torchvision_names(pair: Pair) -> None:
    expected = {k: v for k, v in pair.checkpoint_keys.items() if k not in pair.classifier_keys}
    assert shapes(pair.ours) == expected  # the same names with the same shapes


def test_num_features_is_the_output_width(pair: Pair) -> None:
    assert pair.out_shape == (2, pair.ours.num_features)
    assert pair.ours.data_config == {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "input_size": (3, 224, 224)}


def test_stages_cover_every_parameter_exactly_once(pair: Pair) -> None:
    stages = stages_of(pair.ours)  # what transferkit unfreezes for unfreeze = "last:K"
    seen = [id(p) for stage in stages for p in stage.parameters()]
    assert len(seen) == len(set(seen)), "a parameter is in two stages"
    assert set(seen) == {id(p) for p in pair.ours.parameters()}, "a parameter is in no stage"
    # stem, then four stages (ResNet layer1..4; DenseNet dense block + transition / final BN)
    assert len(stages) == 5 and all(any(True for _ in s.parameters()) for s in stages)


def test_old_style_densenet_checkpoint_loads() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.DenseNet(growth_rate=8, block_config=(2, 3, 2, 2), num_init_features=16)
    calibrate_batchnorm(reference, torch.randn(2, 3, 64, 64))
    checkpoint = old_style(reference.state_dict())
    assert "features.denseblock1.denselayer1.norm.1.weight" in checkpoint and "classifier.weight" in checkpoint
    ours = DenseNet(8, (2, 3, 2, 2), 16)
    adapted = ours.adapt_state_dict(checkpoint)
    # transferkit compares key sets before loading: nothing may be missing or left over
    assert set(adapted) == set(ours.state_dict())
    ours.load_state_dict(adapted, strict=True)
    reference.classifier = nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours.eval()(x) - reference.eval()(x)).abs().max().item() < 1e-5
