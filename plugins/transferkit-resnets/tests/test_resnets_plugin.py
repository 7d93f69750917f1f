"""Registration through transferkit's pluggy hook, the entry point, and the two ways ImageNet
weights arrive: transferkit's own resolution (torch hub cache) and ``pretrained=True``."""

from __future__ import annotations

import inspect
import posixpath
import warnings
from importlib import metadata

import pytest
import torch
import torchvision
from torch import nn

import transferkit
from transferkit.testing import check_backbone
from transferkit_resnets import IMAGENET1K_V1, resnet18
from transferkit_resnets.plugin import PREFIX, register_backbones

from resnets_helpers import old_style, one_thread  # noqa: F401  (one_thread: autouse fixture)

NAMES = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
    "densenet121", "densenet161", "densenet169", "densenet201",
]


def registered() -> dict[str, tuple]:
    calls = {}

    def register(name, factory, **extras):
        assert name not in calls, f"{name} registered twice"
        calls[name] = (factory, extras)

    register_backbones(register)
    return calls


def test_hook_registers_every_architecture_with_torchvision_weight_urls() -> None:
    calls = registered()
    assert list(calls) == [PREFIX + name for name in NAMES]
    for name, (factory, extras) in calls.items():
        arch = name.removeprefix(PREFIX)
        assert extras["aliases"] == [arch]  # the name before the prefix still works
        url = extras["weights"]["imagenet"]
        expected = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url
        # the basename is what transferkit looks for in the torch hub cache
        assert posixpath.basename(url) == posixpath.basename(expected)
        assert url == expected
        assert extras["description"] and "et al." in extras["description"]
        assert inspect.signature(factory).parameters["pretrained"].default is False


def test_entry_point_is_declared_in_the_distribution() -> None:
    dist = metadata.distribution("transferkit-resnets")
    assert dist.version == "0.1.0"
    points = [ep for ep in dist.entry_points if ep.group == "transferkit"]
    assert [(ep.name, ep.value) for ep in points] == [("resnets", "transferkit_resnets.plugin")]


def test_visible_through_transferkit_with_its_plugin_name() -> None:
    entry = transferkit.get_plugins().registry("backbone").get("resnets/resnet50")
    assert entry.provider == "resnets"
    assert transferkit.get_plugins().info["resnets"].version == "0.1.0"
    backbone = transferkit.create_backbone("resnets/resnet18", weights="none")
    assert backbone.num_features == 512


def test_the_old_unprefixed_name_still_resolves() -> None:
    backbones = transferkit.get_plugins().registry("backbone")
    assert "resnet34" in backbones  # recipes and runs written before the prefix
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert backbones.get("resnet34").name == "resnets/resnet34"
    assert all("'resnet34' is now 'resnets/resnet34'" in str(w.message) for w in said)  # a one-line note (once a process)


@pytest.fixture
def hub_checkpoints(tmp_path):
    """An empty torch hub cache for the test: its checkpoints folder."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(previous)


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_imagenet_weights_load_through_transferkit_from_the_torch_hub_cache(name, hub_checkpoints) -> None:
    """transferkit's own resolution, offline: a torchvision file placed where torch.hub keeps it.
    torchvision's DenseNet files are from 2017: old key names, no BatchNorm counters."""
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name)
    state = reference.state_dict()
    torch.save(old_style(state) if name.startswith("densenet") else state, hub_checkpoints / posixpath.basename(IMAGENET1K_V1[name]))
    backbone = transferkit.create_backbone(PREFIX + name, weights="imagenet")
    assert backbone.weights_origin.startswith("imagenet (torch hub cache")
    setattr(reference, "fc" if name.startswith("resnet") else "classifier", nn.Identity())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone.eval()(x), reference.eval()(x), atol=1e-5)


def test_pretrained_true_loads_through_torch_hub(monkeypatch) -> None:
    """The factory's own path, without the network: what it asks torch.hub for, and that the
    file it gets back ends up in the model."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    asked = []

    def load_state_dict_from_url(url, **kwargs):
        asked.append((url, kwargs))
        return reference.state_dict()

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", load_state_dict_from_url)
    model = resnet18(pretrained=True)
    assert asked == [(IMAGENET1K_V1["resnet18"], {"map_location": "cpu", "check_hash": True, "weights_only": True})]
    assert torch.equal(model.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    reference.fc = nn.Identity()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), reference.eval()(x), atol=1e-5)


def test_adapt_state_dict_names_what_does_not_fit() -> None:
    """A checkpoint of another architecture is not silently half-loaded."""
    model = resnet18()
    other = torchvision.models.resnet34().state_dict()
    with pytest.raises(RuntimeError, match="Unexpected key"):
        model.load_state_dict(model.adapt_state_dict(other), strict=True)


@pytest.mark.parametrize("name", ["resnets/resnet18", "resnets/densenet121"])
def test_conforms_to_the_backbone_contract(name) -> None:
    """transferkit.testing's one-call check: built as a run builds it, features, stages, rebuild."""
    check_backbone(name, input_size=(3, 32, 32))
