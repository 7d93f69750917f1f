"""Building components: the factory's errors told apart (the recipe's parameters, the contract,
the plugin's own bug), and what is built checked against its Protocol, one line naming the plugin."""

from __future__ import annotations

import sys

import pytest
import torch

import transferkit
from transferkit.cli import main
from transferkit.components import PluginBugError
from transferkit.registry import ContractError
from transferkit.testing import TinyCNN, plugin, registered, registered_backbone, write_recipe


class Averager:
    def __init__(self, model, decay: float = 0.9) -> None:
        self.module, self.decay = model, decay

    def update(self, model) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class NoUpdate:
    def __init__(self, model) -> None:
        self.module = model


def _broken_averager(model, decay: float = 0.9):
    return Averager(model, decay=decay + "x")  # a TypeError of the factory's own


def _averagers(register) -> None:
    register("comp/avg", Averager)
    register("comp/broken", _broken_averager)
    register("comp/no_update", NoUpdate)


def test_an_averager_is_built_and_checked_against_its_protocol():
    model = torch.nn.Linear(2, 2)
    with registered(plugin(register_averagers=_averagers), "comp-plugin"):
        built = transferkit.create_averager("comp/avg", model, decay=0.5)
        assert isinstance(built, transferkit.Averager) and built.decay == 0.5
        with pytest.raises(transferkit.PluginError, match=r"^averager 'comp/no_update' \(plugin 'comp-plugin'\) returned NoUpdate,"
                                                          r" which has no update\(\), state_dict\(\), load_state_dict\(\)"):
            transferkit.create_averager("comp/no_update", model)


def test_a_parameter_the_signature_does_not_take_is_rejected_and_names_the_ones_it_does():
    with registered(plugin(register_averagers=_averagers), "comp-plugin"), pytest.raises(transferkit.PluginError) as info:
        transferkit.create_averager("comp/avg", torch.nn.Linear(2, 2), decya=0.5)
    assert str(info.value) == ("averager 'comp/avg' (plugin 'comp-plugin') rejected its parameters:"
                               " got an unexpected keyword argument 'decya'; its parameters: decay")


def test_a_typeerror_inside_the_factory_is_the_plugins_bug_not_the_parameters():
    with registered(plugin(register_averagers=_averagers), "comp-plugin"), pytest.raises(PluginBugError) as info:
        transferkit.create_averager("comp/broken", torch.nn.Linear(2, 2), decay=0.5)
    assert "averager 'comp/broken' (plugin 'comp-plugin') has a bug: its factory raised TypeError: " in str(info.value)
    assert "in _broken_averager)" in str(info.value) and isinstance(info.value.__cause__, TypeError)


def test_a_lazy_factory_that_breaks_the_contract_is_named_when_first_built(tmp_path, monkeypatch):
    (tmp_path / "comp_lazy_mod.py").write_text("def policy():\n    return object()\n\ndef averager():\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def hooks(register) -> None:
        register("comp/lazy", transferkit.lazy_factory("comp_lazy_mod:averager"))

    with registered(plugin(register_averagers=hooks), "lazy-plugin"):
        assert "comp_lazy_mod" not in sys.modules  # registering did not import it
        with pytest.raises(ContractError, match=r"averager 'comp/lazy' with a factory that cannot be called as factory\(model"):
            transferkit.create_averager("comp/lazy", torch.nn.Linear(2, 2))


class Views:
    def __init__(self, crops: int = 2) -> None:
        if crops < 1:
            raise ValueError(f"crops: must be at least 1, got {crops}")

    def views(self, image, resize, size):
        return [image]


def _policies(register) -> None:
    register("comp/views", Views)
    register("comp/no_views", lambda: object())


def test_a_tta_policy_is_checked_and_its_value_errors_are_rejected_parameters():
    with registered(plugin(register_tta=_policies), "tta-plugin"):
        assert isinstance(transferkit.create_tta("comp/views"), transferkit.TTAPolicy)
        with pytest.raises(transferkit.PluginError, match=r"^tta 'comp/views' \(plugin 'tta-plugin'\) rejected its parameters: crops"):
            transferkit.create_tta("comp/views", crops=0)
        with pytest.raises(transferkit.PluginError, match=r"^tta 'comp/no_views' .* returned object, which has no views\(\)"):
            transferkit.create_tta("comp/no_views")


class HalfStateful:
    def __init__(self, num_classes: int) -> None:
        pass

    def __call__(self, images, targets):
        return images, targets

    def state_dict(self) -> dict:
        return {}


def test_a_batch_augmentation_with_half_a_state_is_named():
    hooks = plugin(register_augmentations=lambda register: register("comp/half", HalfStateful, kind="batch"))
    with registered(hooks, "aug-plugin"), pytest.raises(transferkit.PluginError) as info:
        transferkit.create_augmentation("comp/half", num_classes=3)
    assert str(info.value) == ("augmentation 'comp/half' (plugin 'aug-plugin') has only one of state_dict() and load_state_dict()"
                               " (a resumed run needs both, or neither)")


def test_the_command_line_prints_the_plugins_traceback_above_one_line(tiny_recipe, tmp_path, capsys):
    def bugged(pretrained: bool = False, width: int = 8):
        return TinyCNN(width + "px")

    tiny_recipe["backbone"]["name"] = "bug/cnn"
    with registered_backbone("bug/cnn", bugged, "bug-plugin"):
        assert main(["finetune", str(write_recipe(tmp_path / "bug.toml", tiny_recipe)), "--output", str(tmp_path / "run")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    shown = err[err.index("Traceback (most recent call last):"):]
    assert any(", in bugged" in line for line in shown) and shown[-2].startswith("TypeError: unsupported operand")
    assert shown[-1].startswith("transferkit: error: backbone 'bug/cnn' (plugin 'bug-plugin') has a bug: its factory raised TypeError")
