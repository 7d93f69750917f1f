"""Registries: duplicates name both providers, unknown names list close matches, globs filter, old
names resolve with a note, and a registration that breaks the contract names its plugin."""

from __future__ import annotations

import sys

import pytest

from transferkit.errors import PluginError, UnknownComponentError
from transferkit.registry import ContractError, OldNameWarning, Registry, factory_parameters, lazy_factory


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


def test_an_old_name_resolves_to_the_new_one_with_a_one_line_note_once():
    reg = Registry("averager")  # names of this test alone: the note is once per process
    reg.add("registry-test/ema", lambda model, decay=0.9: None, provider="registry-test", aliases=["registry_test_ema"])
    assert "registry_test_ema" in reg and reg.names() == ["registry-test/ema"] and not reg.is_registered("registry_test_ema")
    with pytest.warns(OldNameWarning) as said:
        assert reg.get("registry_test_ema").name == "registry-test/ema"
        assert reg.get("registry_test_ema").name == "registry-test/ema"
    assert [str(w.message) for w in said] == [
        "averager 'registry_test_ema' is now 'registry-test/ema' (plugin 'registry-test'); the old name still works,"
        " but write 'registry-test/ema' in recipes and code"]
    assert reg.get("registry-test/ema").describe() == " (decay=0.9) [formerly registry_test_ema]"


def test_a_name_registered_as_itself_wins_over_another_plugins_old_name():
    for order in ((("averaging/ema", "averaging", ["ema"]), ("ema", "other", [])),
                  (("ema", "other", []), ("averaging/ema", "averaging", ["ema"]))):
        reg = Registry("averager")
        for name, provider, aliases in order:
            reg.add(name, lambda model: None, provider=provider, aliases=aliases)
        assert reg.get("ema").provider == "other"


def test_an_old_name_two_plugins_claim_resolves_to_neither_and_the_error_names_both():
    reg = Registry("tta")
    reg.add("averaging/flip", lambda: None, provider="averaging", aliases=["flip"])
    reg.add("other/flip", lambda: None, provider="other", aliases=["flip"])
    with pytest.raises(UnknownComponentError, match="unknown tta 'flip'; did you mean averaging/flip, other/flip"):
        reg.get("flip")


@pytest.mark.parametrize("kind, factory, extras, said", [
    ("backbone", lambda: None, {}, "backbone 'x/net' with a factory that cannot be called as factory(pretrained: bool = False"),
    ("averager", lambda: None, {}, "averager 'x/net' with a factory that cannot be called as factory(model, **params)"),
    ("augmentation", lambda: None, {"kind": "batch"}, "cannot be called as factory(num_classes, **params)"),
    ("augmentation", lambda: None, {"kind": "batches"}, "kind='batches' (an augmentation is kind=\"image\" or kind=\"batch\")"),
    ("backbone", _factory, {"weigths": {}}, "with 'weigths', which register does not take for a backbone (it takes description,"),
    ("backbone", _factory, {"weights": "https://x/y.pth"}, "weights='https://x/y.pth' (a dict of URLs"),
    ("command", lambda parser: None, {}, "no run= (a command is register(name, configure, run=run))"),
])
def test_a_registration_that_breaks_the_contract_names_the_plugin(kind, factory, extras, said):
    with pytest.raises(ContractError) as info:
        Registry(kind).add("x/net", factory, provider="p", **extras)
    assert str(info.value).startswith("plugin 'p' registered ") and said in str(info.value)


def test_a_lazy_factory_is_not_imported_to_register_it():
    reg = Registry("backbone")
    reg.add("x/net", lazy_factory("no_such_module_anywhere:net"), provider="p")  # checked when first built
    assert "no_such_module_anywhere" not in sys.modules and "x/net" in reg
