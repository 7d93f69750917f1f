"""The options from the literature: zero-initialised residual branches, Kaiming fan_out
initialisation, pre-activation blocks, memory-efficient (checkpointed) dense layers.

One architecture per kind of block (basic, bottleneck, grouped bottleneck): depth does not change
the code these options go through, and the deep networks are slow to build on a small CPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.utils.checkpoint as cp
from torch import nn

from transferkit.testing import stages_of
from transferkit_resnets import DenseNet, densenet121, resnet50
from transferkit_resnets.blocks import ResidualBlock
from transferkit_resnets.plugin import BACKBONES

from resnets_helpers import one_thread  # noqa: F401  (autouse fixture)

BLOCK_KINDS = ["resnet18", "resnet50", "resnext50_32x4d"]  # basic, bottleneck, grouped bottleneck


def blocks_of(model: nn.Module) -> list[ResidualBlock]:
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]


@pytest.mark.parametrize("preact", [False, True], ids=["v1", "preact"])
@pytest.mark.parametrize("name", BLOCK_KINDS)
def test_zero_init_residual_starts_every_block_as_its_shortcut(name: str, preact: bool) -> None:
    model = BACKBONES[name](zero_init_residual=True, preact=preact)
    blocks = blocks_of(model)
    assert len(blocks) == (8 if name == "resnet18" else 16)
    for block in blocks:
        # the last layer of each residual branch: its BN (v1) or, pre-activation, its convolution
        last = block.last_layer()
        assert isinstance(last, nn.Conv2d if preact else nn.BatchNorm2d)
        assert torch.count_nonzero(last.weight) == 0
    # so every block with an identity shortcut returns its input: Var(F(x) + x) = Var(x).
    # (v1 ends in a ReLU, an identity here too: its input is the previous block's ReLU output)
    checked = []

    def is_identity(block: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        if block.downsample is None:
            checked.append(torch.equal(output, inputs[0]))

    handles = [b.register_forward_hook(is_identity) for b in blocks]
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 32, 32))
    for handle in handles:
        handle.remove()
    # all blocks but the first of each stage (ResNet-18's first stage keeps 64 channels: identity)
    projections = 3 if name == "resnet18" else 4
    assert len(checked) == len(blocks) - projections and all(checked)


def test_without_zero_init_residual_every_gamma_is_one() -> None:
    model = BACKBONES["resnet18"]()
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in model.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("factory", [resnet50, densenet121])
def test_kaiming_fan_out_initialisation(factory) -> None:
    torch.manual_seed(0)
    model = factory()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.numel() > 50_000]
    assert convs
    for conv in convs:
        # He et al. 2015: std = sqrt(2 / fan_out), fan_out = out_channels * k * k (per group: all of it)
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.05)


@pytest.mark.parametrize("name", BLOCK_KINDS)
def test_preactivation_variant_builds_runs_and_trains(name: str) -> None:
    torch.manual_seed(0)
    model = BACKBONES[name](preact=True)
    assert all(b.preact for b in blocks_of(model))
    # projection shortcuts are bare 1x1 convolutions; a final BN-ReLU normalises the last sum
    assert all(len(b.downsample) == 1 for b in blocks_of(model) if b.downsample is not None)
    assert "final_norm.0.weight" in model.state_dict()
    out = model.train()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, model.num_features)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    stage_params = {id(p) for stage in stages_of(model) for p in stage.parameters()}
    assert stage_params == {id(p) for p in model.parameters()}
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, model.num_features)


def test_preactivation_has_no_imagenet_weights() -> None:
    with pytest.raises(ValueError, match="pre-activation"):
        BACKBONES["resnet18"](pretrained=True, preact=True)


def small_densenet(memory_efficient: bool = False) -> DenseNet:
    """DenseNet's structure at a size that runs in a blink: k=8, blocks [2, 3, 2, 2]."""
    return DenseNet(8, (2, 3, 2, 2), 16, memory_efficient=memory_efficient)


@pytest.mark.parametrize("build", [small_densenet, densenet121], ids=["small", "densenet121"])
def test_memory_efficient_densenet_matches_the_plain_one(build, monkeypatch) -> None:
    torch.manual_seed(0)
    plain, efficient = build(), build(memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    checkpointed = []
    original = cp.checkpoint
    monkeypatch.setattr(cp, "checkpoint", lambda *a, **k: checkpointed.append(1) or original(*a, **k))
    x = torch.randn(2, 3, 32, 32)
    outs = []
    for model in (plain, efficient):
        out = model.train()(x)
        out.square().mean().backward()
        outs.append(out.detach())
    dense_layers = sum(1 for name, _ in plain.named_modules() if name.rsplit(".", 1)[-1].startswith("denselayer"))
    assert len(checkpointed) == dense_layers  # the efficient one really recomputed its bottlenecks
    torch.testing.assert_close(outs[1], outs[0], atol=1e-6, rtol=1e-5)
    grads = {n: p.grad for n, p in efficient.named_parameters()}
    for name, p in plain.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, atol=1e-6, rtol=1e-4, msg=f"gradient of {name}")
    # the recomputation in backward does not update the running statistics a second time
    buffers = dict(efficient.named_buffers())
    for name, b in plain.named_buffers():
        torch.testing.assert_close(buffers[name], b, atol=1e-6, rtol=1e-5, msg=f"buffer {name}")


def test_memory_efficient_densenet_without_gradients_skips_checkpointing(monkeypatch) -> None:
    model = small_densenet(memory_efficient=True).eval()
    monkeypatch.setattr(cp, "checkpoint", lambda *a, **k: pytest.fail("checkpointed without gradients"))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, model.num_features)
