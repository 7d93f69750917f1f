"""The backbone contract, checked for built-in backbones and for plugins that break it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transferkit.components import PluginBugError
from transferkit.errors import PluginError
from transferkit.models.backbone import backbone_stages, create_backbone, probe_features
from transferkit.testing import TinyCNN, registered_backbone

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
        (lambda pretrained=False: WrongShape(), r"'bad/net' \(plugin 'bad-plugin'\) returned features of shape \(2, 3\) .* \(2, 8\)"),
        (lambda pretrained=False: nn.Identity(), r"'bad/net' \(plugin 'bad-plugin'\) has no positive int attribute num_features"),
        (lambda pretrained=False: 1 / 0, r"'bad/net' \(plugin 'bad-plugin'\) failed to build: ZeroDivisionError"),
    ],
)
def test_plugin_breaking_the_contract_is_named(factory, message):
    with registered_backbone("bad/net", factory, "bad-plugin"), pytest.raises(PluginError, match=message):
        probe_features(create_backbone("bad/net"), "bad/net", (3, 16, 16))


def test_a_wrong_shaped_backbone_is_one_line_naming_its_plugin():
    with registered_backbone("bad/net", lambda pretrained=False: WrongShape(), "bad-plugin"), pytest.raises(PluginError) as info:
        probe_features(create_backbone("bad/net"), "bad/net", (3, 16, 16))
    assert str(info.value) == (
        "backbone 'bad/net' (plugin 'bad-plugin') returned features of shape (2, 3) for a batch of 2, expected (2, 8):"
        " forward must return pooled features [N, num_features] (pool and flatten them)")


def _adds_a_string(pretrained: bool = False, width: int = 8) -> nn.Module:
    return TinyCNN(width + "px")  # the plugin's own bug: a TypeError that no parameter explains


def test_a_typeerror_inside_the_factory_is_the_plugins_bug_with_its_traceback():
    with registered_backbone("bad/net", _adds_a_string, "bad-plugin"), pytest.raises(PluginBugError) as info:
        create_backbone("bad/net", width=4)
    message = str(info.value)
    assert "\n" not in message and message.startswith(
        "backbone 'bad/net' (plugin 'bad-plugin') has a bug: its factory raised TypeError: unsupported operand type(s) for +")
    assert "(at test_backbone.py:" in message and "in _adds_a_string)" in message and "rejected" not in message
    assert isinstance(info.value.__cause__, TypeError)  # the plugin's traceback, for the command line to print


def test_a_parameter_the_factory_does_not_take_is_rejected_not_a_bug():
    with registered_backbone("tiny/cnn", lambda pretrained=False, width=8: TinyCNN(width), "p"), pytest.raises(PluginError) as info:
        create_backbone("tiny/cnn", widht=4)
    assert not isinstance(info.value, PluginBugError)
    assert str(info.value) == ("backbone 'tiny/cnn' (plugin 'p') rejected its parameters: got an unexpected keyword argument"
                               " 'widht'; its parameters: width")


def test_a_factory_passing_params_on_to_a_callee_that_refuses_one_rejects_it():
    with registered_backbone("tiny/cnn", lambda pretrained=False, **params: TinyCNN(**params), "p"), pytest.raises(PluginError) as info:
        create_backbone("tiny/cnn", depth=3)
    assert "rejected its parameters: " in str(info.value) and "'depth'" in str(info.value)
    assert not isinstance(info.value, PluginBugError)


class ListedStages(TinyCNN):
    def __init__(self, container: type) -> None:
        super().__init__(4)
        self.stages = container([self.stem, self.stage1])


@pytest.mark.parametrize("container", [list, tuple, nn.ModuleList])
def test_declared_stages_may_be_a_list_a_tuple_or_a_module_list(container):
    model = ListedStages(container)
    assert backbone_stages(model) == [model.stem, model.stage1]


def test_a_stages_method_is_refused_with_the_fix():
    class MethodStages(TinyCNN):
        def __init__(self) -> None:
            super().__init__()
            del self.stages  # TinyCNN's list: let the method below show

        def stages(self):  # the mistake under test
            return [self.stem, self.stage1]

    with registered_backbone("bad/net", lambda pretrained=False: MethodStages(), "bad-plugin"), pytest.raises(PluginError) as info:
        create_backbone("bad/net")
    assert "(plugin 'bad-plugin') has a stages method: make it an attribute or a property" in str(info.value)
