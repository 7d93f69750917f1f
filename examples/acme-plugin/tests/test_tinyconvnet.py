"""acme/tinyconvnet: the backbone contract, and its weights from local files (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import transferkit
from transferkit.testing import data_config_of, stages_of
from transferkit_acme.tinyconvnet import WEIGHTS_ENV, TinyConvNet, pretrained_path, tinyconvnet


@pytest.mark.parametrize(("width", "depth"), [(16, 3), (8, 1), (4, 5)])
def test_pooled_features_of_num_features(width: int, depth: int) -> None:
    model = tinyconvnet(width=width, depth=depth).eval()
    assert model.num_features == width * 2**depth
    for size in (32, 64, 97):
        assert model(torch.rand(2, 3, size, size)).shape == (2, model.num_features)


def test_stages_cover_every_parameter_in_order() -> None:
    model = tinyconvnet(width=8, depth=3)
    stages = stages_of(model)  # what transferkit uses for unfreeze = "last:K"
    assert stages[0] is model.stem and len(stages) == 4
    in_stages = {id(p) for s in stages for p in s.parameters()}
    assert in_stages == {id(p) for p in model.parameters()}


def test_data_config_is_imagenet() -> None:
    cfg = data_config_of(tinyconvnet())
    assert cfg["mean"] == transferkit.IMAGENET_MEAN and cfg["std"] == transferkit.IMAGENET_STD
    assert cfg["input_size"] == (3, 64, 64)


@pytest.mark.parametrize(("params", "message"), [({"width": 0}, "width: must be an integer from 1 to 256"),
                                                 ({"depth": 7}, "depth: must be an integer from 1 to 6"),
                                                 ({"depth": 2.0}, "depth: must be an integer")])
def test_bad_params_are_named(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tinyconvnet(**params)
    with pytest.raises(transferkit.PluginError, match=f"'acme/tinyconvnet' \\(plugin 'acme'\\).*{message}"):
        transferkit.create_backbone("acme/tinyconvnet", weights="none", **params)


def _trained_like(width: int = 8, depth: int = 2) -> TinyConvNet:
    torch.manual_seed(1)
    model = tinyconvnet(width=width, depth=depth)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_pretrained_loads_the_file_named_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _trained_like()
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "w.safetensors"))
    assert pretrained_path(8, 2) == tmp_path / "w.safetensors"
    # no download URL is declared, so weights = "imagenet" calls the factory with pretrained=True
    model = transferkit.create_backbone("acme/tinyconvnet", weights="imagenet", width=8, depth=2)
    assert _same(model, source) and model.weights_origin == "imagenet"


def test_pretrained_default_path_is_per_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert pretrained_path(16, 3).name == "tinyconvnet-w16-d3.safetensors"


def test_missing_or_misfitting_weights_say_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "absent.safetensors"))
    with pytest.raises(transferkit.PluginError, match=f"no pretrained weights at .*absent.safetensors; set {WEIGHTS_ENV}="):
        transferkit.create_backbone("acme/tinyconvnet", weights="imagenet")
    torch.save(_trained_like(width=8, depth=2).state_dict(), tmp_path / "small.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "small.pth"))
    with pytest.raises(transferkit.PluginError, match="does not fit tinyconvnet\\(width=16, depth=3\\).*width and depth"):
        transferkit.create_backbone("acme/tinyconvnet", weights="imagenet")


def test_a_runs_model_file_loads_through_adapt_state_dict(tmp_path: Path) -> None:
    """A transferkit run saves ``backbone.*`` and ``head.*``: its backbone is a starting point."""
    source = _trained_like()
    state = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    state |= {"head.weight": torch.zeros(3, source.num_features), "head.bias": torch.zeros(3)}
    save_file(state, str(tmp_path / "model.safetensors"))
    # weights = "path/to/file": the core reads the file and calls adapt_state_dict
    model = transferkit.create_backbone("acme/tinyconvnet", weights=str(tmp_path / "model.safetensors"), width=8, depth=2)
    assert _same(model, source)
