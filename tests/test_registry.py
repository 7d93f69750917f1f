"""Registries: duplicates name both providers, unknown names list close matches, globs filter."""

from __future__ import annotations

import pytest

from transferkit.errors import PluginError, UnknownComponentError
from transferkit.registry import Registry


def _factory(pretrained: bool = False):
    return None


def test_duplicate_name_names_both_plugins():
    reg = Registry("backbone")
    reg.add("resnet50", _factory, provider="alpha")
    with pytest.raises(PluginError, match="'resnet50' is registered twice: by plugin 'alpha' and by plugin 'beta'"):
        reg.add("resnet50", _factory, provider="beta")


def test_unknown_name_lists_close_matches():
    reg = Registry("backbone")
    for name in ("resnet18", "resnet34", "resnet50", "densenet121"):
        reg.add(name, _factory, provider="p")
    with pytest.raises(UnknownComponentError) as info:
        reg.get("resnet51")
    assert "unknown backbone 'resnet51'; did you mean resnet50" in str(info.value)
    with pytest.raises(UnknownComponentError, match="see `transferkit list backbones`"):
        reg.get("vgg")


def test_filter_and_provider():
    reg = Registry("augmentation")
    reg.add("mixup", _factory, provider="aug", kind="batch")
    reg.add("cutmix", _factory, provider="aug", kind="batch")
    reg.add("hflip", _factory, provider="core")
    assert reg.names("*mix*") == ["cutmix", "mixup"]
    assert reg.get("mixup").provider == "aug" and reg.get("mixup").extras == {"kind": "batch"}
    assert len(reg) == 3 and "hflip" in reg


def test_factory_must_be_callable():
    with pytest.raises(PluginError, match="not callable"):
        Registry("averager").add("ema", 3, provider="p")
