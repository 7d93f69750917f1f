"""Every architecture against torchvision's model of the same name: the same parameter names and
counts, and the same pooled features (within 1e-5) once torchvision's weights are loaded into ours.

Each architecture is built once (a module-scoped fixture; pytest runs all tests of one
architecture before building the next), because the deep ones are slow to build on a small CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torchvision
from torch import nn

from transferkit.testing import stages_of
from transferkit_resnets import IMAGENET1K_V1, DenseNet
from transferkit_resnets.plugin import BACKBONES

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


@dataclass
class Pair:
    name: str
    ours: nn.Module
    reference: nn.Module  # torchvision's, classifier replaced by nn.Identity
    classifier_keys: set[str]
    checkpoint_keys: set[str]
    ours_out: torch.Tensor
    reference_out: torch.Tensor


def drop_classifier(reference: nn.Module) -> set[str]:
    attr = "fc" if hasattr(reference, "fc") else "classifier"
    keys = {f"{attr}.{k}" for k in getattr(reference, attr).state_dict()}
    setattr(reference, attr, nn.Identity())
    return keys


@pytest.fixture(scope="module", params=list(IMAGENET1K_V1))
def pair(request) -> Pair:
    name = request.param
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name, weights=None)
    calibrate_batchnorm(reference, torch.randn(2, 3, 64, 64))
    checkpoint = reference.state_dict()  # as torchvision's files hold it, classifier included
    ours = BACKBONES[name]()
    ours.load_state_dict(ours.adapt_state_dict(checkpoint), strict=True)
    classifier_keys = drop_classifier(reference)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours_out, reference_out = ours.eval()(x), reference.eval()(x)
    return Pair(name, ours, reference, classifier_keys, set(checkpoint), ours_out, reference_out)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_pooled_features_equal_torchvision(pair: Pair) -> None:
    assert pair.ours_out.shape == pair.reference_out.shape
    # the features are at a moderate scale (calibrated BNs), so 1e-5 is a tight absolute tolerance
    assert 0.01 < pair.reference_out.abs().mean().item() < 100
    assert (pair.ours_out - pair.reference_out).abs().max().item() < 1e-5


def test_parameter_count_is_torchvision_minus_its_classifier(pair: Pair) -> None:
    assert count(pair.ours) == count(pair.reference) == PARAMS[pair.name]


def test_state_dict_names_are_torchvision_names(pair: Pair) -> None:
    assert set(pair.ours.state_dict()) == pair.checkpoint_keys - pair.classifier_keys


def test_num_features_is_the_output_width(pair: Pair) -> None:
    assert pair.ours_out.shape == (2, pair.ours.num_features)
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
