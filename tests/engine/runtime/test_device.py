"""The runtime: device, precision and memory format chosen from the recipe's train settings."""

from __future__ import annotations

import pytest
import timm
import torch

from transferkit.cli import main
from transferkit.engine.runtime.device import device_problem, resolve_runtime
from transferkit.errors import RecipeError
from transferkit.recipe import TrainConfig
from transferkit.recipe_loading import load_recipe
from transferkit.testing import write_recipe


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


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("device, says", [
    ("cuda", "train.device = 'cuda': no CUDA device on this machine; use auto or cpu"),
    ("cuda:1", "train.device = 'cuda:1': no CUDA device on this machine; use auto or cpu"),
    ("mps", "train.device = 'mps': no Apple MPS device on this machine; use auto or cpu"),
])
def test_a_device_the_machine_lacks_is_one_line_in_validate_and_the_runtime(no_gpu, tiny_recipe, device, says) -> None:
    assert device_problem("auto") is None and device_problem("cpu") is None
    assert device_problem(device) == says
    with pytest.raises(RecipeError) as caught:
        load_recipe(tiny_recipe, [f"train.device={device}"])
    assert str(caught.value) == f"recipe: {says}"
    with pytest.raises(RecipeError, match="no .* device on this machine"):
        resolve_runtime(TrainConfig(device=device))


def test_a_cuda_index_past_the_last_gpu_names_the_ones_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_problem("cuda:0") is None and device_problem("cuda") is None
    assert device_problem("cuda:2") == "train.device = 'cuda:2': this machine has 1 CUDA device(s) (cuda:0); use one of them, auto or cpu"


def test_finetune_on_a_missing_device_exits_2_and_leaves_no_run_folder(no_gpu, tiny_recipe, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["validate", str(recipe), "--set", "train.device=cuda"]) == 2
    assert main(["finetune", str(recipe), "--set", "train.device=cuda"]) == 2
    assert main(["finetune", str(recipe), "--set", "train.device=cuda", "--output", str(tmp_path / "out")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [f"transferkit: error: {recipe}: train.device = 'cuda': no CUDA device on this machine; use auto or cpu"] * 3
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_cuda_runtime_turns_on_cudnn_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA runtime lets cuDNN time its convolution algorithms once per shape; the CPU one
    leaves the flag alone (faked CUDA: only the flag and the choice are checked, nothing runs)."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    resolve_runtime(TrainConfig(device="cpu"))
    assert torch.backends.cudnn.benchmark is False
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    runtime = resolve_runtime(TrainConfig(device="auto"))
    assert runtime.device.type == "cuda" and runtime.amp_dtype == torch.bfloat16
    assert torch.backends.cudnn.benchmark is True
