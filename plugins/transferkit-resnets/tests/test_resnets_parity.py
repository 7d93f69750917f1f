"""Every architecture against torchvision: same parameter names and counts, and the same pooled
features (within 1e-5) once torchvision's randomly initialised weights are loaded into ours."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from transferkit_resnets.plugin import WEIGHTS, factories

# torchvision's counts without the classifier, e.g. ResNet-50: 25,557,032 - 2,049,000 = 23,508,032
EXPECTED_PARAMS = {"resnet50": 23_508_032, "resnet18": 11_176_512, "densenet121": 6_953_856}


@pytest.mark.parametrize("name", list(WEIGHTS))
def test_features_and_parameter_count_equal_torchvision(name):
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name, weights=None).eval()
    ours = factories()[name]().eval()
    # torchvision's whole state dict, ImageNet classifier included, as a checkpoint would hold it
    ours.load_state_dict(ours.adapt_state_dict(reference.state_dict()), strict=True)
    if hasattr(reference, "fc"):
        reference.fc = nn.Identity()
    else:
        reference.classifier = nn.Identity()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    if name in EXPECTED_PARAMS:
        assert sum(p.numel() for p in ours.parameters()) == EXPECTED_PARAMS[name]
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours(x), reference(x)
    assert a.shape == (2, ours.num_features)
    assert (a - b).abs().max().item() < 1e-5


def test_adapt_state_dict_drops_the_classifier_and_renames_old_densenet_keys():
    ours = factories()["densenet121"]()
    state = {k: v for k, v in ours.state_dict().items()}
    old = {(k.replace("denselayer1.norm1.", "denselayer1.norm.1.") if "num_batches" not in k else k): v for k, v in state.items()}
    old["classifier.weight"] = torch.zeros(1000, ours.num_features)
    assert ours.adapt_state_dict(old).keys() == state.keys()
    resnet = factories()["resnet18"]()
    with_fc = {**resnet.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    assert resnet.adapt_state_dict(with_fc).keys() == resnet.state_dict().keys()
