"""The runtime: device, precision and memory format chosen from the recipe's train settings."""

from __future__ import annotations

import pytest
import timm
import torch

from transferkit.engine.runtime import resolve_runtime
from transferkit.recipe import TrainConfig


def test_cpu_runs_fp32_in_channels_last_unless_turned_off() -> None:
    runtime = resolve_runtime(TrainConfig(device="cpu"))
    assert runtime.device.type == "cpu" and runtime.amp_dtype is None and runtime.channels_last
    assert not resolve_runtime(TrainConfig(device="cpu", channels_last=False)).channels_last
    batch = runtime.to_device(torch.randn(2, 3, 8, 8))
    assert batch.is_contiguous(memory_format=torch.channels_last)
    with runtime.autocast():  # a no-op on the CPU: fp32 stays fp32
        assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == torch.float32


def test_channels_last_gives_the_same_logits_and_gradients() -> None:
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_lite0", num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    expected.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    nhwc = model.to(memory_format=torch.channels_last)
    got = nhwc(x.contiguous(memory_format=torch.channels_last))
    got.sum().backward()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    for g, p in zip(grads, nhwc.parameters()):  # another summation order: relative to the tensor's scale
        torch.testing.assert_close(p.grad, g, rtol=1e-3, atol=1e-3 * float(g.abs().max()) + 1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_uses_amp_and_channels_last() -> None:
    runtime = resolve_runtime(TrainConfig(device="cuda"))
    assert runtime.amp_dtype in (torch.bfloat16, torch.float16) and runtime.channels_last
