"""The plugin contract's Protocols: conforming classes pass by their shape, what is missing is named,
and the contract module imports no torch."""

from __future__ import annotations

import subprocess
import sys

import torch

import transferkit
from transferkit import hookspecs
from transferkit.protocols import CORE_ARGUMENTS, check_factory, missing_members, protocol_members
from transferkit.testing import TinyCNN


class Mean:
    def __init__(self, model) -> None:
        self.module = model

    def update(self, model) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def test_components_conform_by_their_shape_alone():
    assert isinstance(TinyCNN(), transferkit.Backbone)
    assert isinstance(Mean(None), transferkit.Averager)
    assert isinstance(lambda images, targets: (images, targets), transferkit.BatchAugmentation)
    assert not isinstance(object(), transferkit.TTAPolicy)


def test_missing_members_are_named_methods_with_brackets():
    assert protocol_members(transferkit.Averager) == ["module", "update", "state_dict", "load_state_dict"]
    assert missing_members(object(), transferkit.Averager) == ["module", "update()", "state_dict()", "load_state_dict()"]
    assert missing_members(torch.nn.Identity(), transferkit.Backbone) == ["num_features"]


def test_each_kinds_factory_contract_is_checked_from_its_signature():
    assert check_factory("backbone", lambda pretrained=False, width=8: None) is None
    assert check_factory("backbone", lambda **params: None) is None
    assert "factory(pretrained: bool = False, **params)" in check_factory("backbone", lambda width=8: None)
    assert check_factory("dataset", lambda root, seed=0, val_fraction=0.1: None) is None
    assert check_factory("averager", dict) is None  # no signature to read: let through, called as it is
    assert set(CORE_ARGUMENTS) == {"backbone", "batch augmentation", "averager", "dataset", "command"}


def test_every_hook_takes_the_typed_register():
    for name in ("register_backbones", "register_augmentations", "register_averagers", "register_datasets", "register_tta",
                 "register_commands"):
        assert getattr(hookspecs, name).__annotations__["register"] == "Register"


def test_the_contract_imports_no_torch():
    code = "import sys, transferkit.protocols, transferkit.registry; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
