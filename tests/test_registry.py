"""Registries: duplicates name both providers, unknown names list close matches, globs filter."""

from __future__ import annotations

import sys

import pytest

from transferkit.errors import PluginError, UnknownComponentError
from transferkit.registry import Registry, factory_parameters, lazy_factory


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


def test_a_lazy_factorys_parameters_from_its_source_match_the_imported_factory(tmp_path, monkeypatch):
    (tmp_path / "lazy_params_mod.py").write_text(
        "import math\nFILL = (1, 2)\n"
        "def make(pretrained=False, size: float = 0.5, *, fill=FILL, name='x', seed=None, **rest):\n    return size\n"
        "class Plain:\n    pass\n"
        "class Made:\n    def __init__(self, model, decay=0.9, scales=(0.5, -1.0)):\n        self.decay = decay\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    make, plain, made = (lazy_factory(f"lazy_params_mod:{n}") for n in ("make", "Plain", "Made"))
    assert factory_parameters(make) == {"size": "0.5", "fill": "FILL", "name": "'x'", "seed": "None"}
    assert factory_parameters(plain) == {} and factory_parameters(made) == {"decay": "0.9", "scales": "(0.5, -1.0)"}
    assert "lazy_params_mod" not in sys.modules  # read from the source
    assert factory_parameters(made) == factory_parameters(made.load())  # the same once imported
    assert factory_parameters(make) == {"size": "0.5", "fill": "(1, 2)", "name": "'x'", "seed": "None"}
    assert make(size=2.0) == 2.0
