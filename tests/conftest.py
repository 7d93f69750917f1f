"""Shared fixtures: ``transferkit.testing``'s tiny backbone, image folders, recipe and run (seconds,
no network), and an installed-looking plugin for tests that run transferkit in other processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from transferkit.plugins import registry
from transferkit.testing import image_folder, tiny_backbone, tiny_recipe, tiny_run  # noqa: F401  (fixtures)

SHARED_FLOWERS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flowers12"


SUBPROCESS_PLUGIN = """
import torch
from torch import nn
from transferkit import hookimpl

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = 8
        self.data_config = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "input_size": (3, 32, 32)}

    def forward(self, x):
        return self.body(x)

@hookimpl
def register_backbones(register):
    register("subprocess/tiny", lambda pretrained=False: Tiny())
"""


def installed_tiny_plugin(root: Path, source: str = SUBPROCESS_PLUGIN) -> Path:
    """A folder to put on PYTHONPATH: an installed-looking distribution whose entry point
    registers backbone ``subprocess/tiny`` (for tests that run transferkit in other processes);
    ``source``: the plugin module's code, ``SUBPROCESS_PLUGIN`` or a variant of it."""
    dist = root / "subprocesstiny-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: subprocesstiny\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[transferkit]\nsubprocesstiny = subprocesstiny_plugin\n")
    (root / "subprocesstiny_plugin.py").write_text(source)
    return root


@pytest.fixture(autouse=True)
def _quiet_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_OFFLINE", "1")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def needs_plugin_component(kind: str, name: str, package: str) -> pytest.MarkDecorator:
    """Skip where a core test uses a plugin's component and that plugin is not installed: the
    core's tests stay green with the plugins uninstalled."""
    return pytest.mark.skipif(name not in registry(kind), reason=f"needs {package} ({kind} {name!r})")
