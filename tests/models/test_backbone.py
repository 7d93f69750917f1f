"""The backbone contract, checked for built-in backbones and for plugins that break it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferkit.errors import PluginError
from transferkit.models.backbone import backbone_stages, create_backbone, probe_features
from transferkit.testing import registered_backbone

BUILTIN = [
    "timm/tf_efficientnet_lite0", "timm/efficientnet_lite0", "timm/resnet18", "torchvision/resnet18", "torchvision/mobilenet_v3_small",
]


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_backbones_honour_the_contract(name):
    backbone = create_backbone(name).eval()
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, backbone.num_features)
    stages = backbone_stages(backbone)
    assert len(stages) >= 3
    covered = {id(p) for s in stages for p in s.parameters()}
    assert covered == {id(p) for p in backbone.parameters()}


class WrongShape(nn.Module):
    num_features = 8

    def forward(self, x):
        return x.mean(dim=(2, 3))  # 3 features, not 8


@pytest.mark.parametrize(
    "factory,message",
    [
        (lambda pretrained=False: WrongShape(), r"'bad/net' returned features of shape \(2, 3\) .* expected \(2, 8\)"),
        (lambda pretrained=False: nn.Identity(), r"'bad/net' \(plugin 'bad-plugin'\) has no positive int attribute num_features"),
        (lambda pretrained=False: 1 / 0, r"'bad/net' \(plugin 'bad-plugin'\) failed to build: ZeroDivisionError"),
    ],
)
def test_plugin_breaking_the_contract_is_named(factory, message):
    with registered_backbone("bad/net", factory, "bad-plugin"), pytest.raises(PluginError, match=message):
        probe_features(create_backbone("bad/net"), "bad/net", (3, 16, 16))
