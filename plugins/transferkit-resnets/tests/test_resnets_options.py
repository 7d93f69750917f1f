"""The options from the literature, the stages contract, and registration through transferkit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import transferkit
from transferkit_resnets import DenseNet, densenet121, resnet18, resnet50, resnext50_32x4d
from transferkit_resnets.blocks import BasicBlock, Bottleneck
from transferkit_resnets.plugin import WEIGHTS, register_backbones


@pytest.mark.parametrize("factory", [resnet18, resnet50])
def test_zero_init_residual_zeroes_the_last_bn_of_every_branch(factory):
    model = factory(zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    assert blocks and all(torch.count_nonzero(b.last_norm().weight) == 0 for b in blocks)
    # each block starts as the identity on its shortcut: Var(F(x) + x) = Var(x)
    block = model.layer1[1].eval()
    x = torch.relu(torch.randn(2, block.conv1.in_channels, 8, 8))
    with torch.no_grad():
        assert torch.allclose(block(x), x)


def test_kaiming_fan_out_initialisation():
    torch.manual_seed(0)
    conv = resnet50().layer3[0].conv2
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1] // conv.groups
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.05)


@pytest.mark.parametrize("factory", [resnet18, resnet50])
def test_preactivation_variant_trains(factory):
    model = factory(preact=True)
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, model.num_features) and model.final_norm is not None
    assert all(p.grad is not None for p in model.parameters())


def test_memory_efficient_densenet_gives_the_same_output_and_gradients():
    torch.manual_seed(0)
    plain = DenseNet(8, (2, 3, 2, 2), 16)  # a small DenseNet: the mechanism, in a second
    efficient = DenseNet(8, (2, 3, 2, 2), 16, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 48, 48)
    outs = []
    for model in (plain, efficient):
        model.train()
        out = model(x)
        out.square().mean().backward()
        outs.append((out.detach(), model.features.conv0.weight.grad.clone()))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-5)
    assert torch.allclose(outs[0][1], outs[1][1], atol=1e-5)


@pytest.mark.parametrize("factory", [resnet18, resnext50_32x4d, densenet121])
def test_stages_cover_every_parameter_once(factory):
    model = factory()
    seen = [id(p) for stage in model.stages for p in stage.parameters()]
    assert len(seen) == len(set(seen)) and set(seen) == {id(p) for p in model.parameters()}
    assert len(model.stages) == 5


def test_registers_every_architecture_with_torchvision_weight_urls():
    import torchvision

    calls = []
    register_backbones(lambda name, factory, **kw: calls.append((name, kw)))
    assert [c[0] for c in calls] == list(WEIGHTS)
    for name, kw in calls:
        url = kw["weights"]["imagenet"]
        assert url == torchvision.models.get_model_weights(name).IMAGENET1K_V1.url


def test_visible_through_transferkit_with_its_plugin_name():
    entry = transferkit.get_plugins().registry("backbone").get("resnet50")
    assert entry.provider == "resnets"
    assert transferkit.get_plugins().info["resnets"].version == "0.1.0"
    backbone = transferkit.create_backbone("resnet18", weights="none")
    assert backbone.num_features == 512


def test_imagenet_weights_load_from_the_torch_hub_cache(tmp_path, monkeypatch):
    """The real resolution path, offline: a torchvision checkpoint placed where torch.hub keeps it."""
    import torchvision

    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        reference = torchvision.models.resnet18()
        (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
        torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / WEIGHTS["resnet18"])
        backbone = transferkit.create_backbone("resnet18", weights="imagenet")
        assert backbone.weights_origin.startswith("imagenet (torch hub cache")
        reference.fc = nn.Identity()
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            assert torch.allclose(backbone.eval()(x), reference.eval()(x), atol=1e-5)
    finally:
        torch.hub.set_dir(previous)
