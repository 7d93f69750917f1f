"""Start-up cost: ``import transferkit``, building the command line and the commands that need no
model (``--help``, ``plugins``, ``list datasets``) import no torch, with the bundled plugins
installed (their entry points are lazy too), and every public name resolves.

``validate`` does import torch: it estimates a training step's memory on the device and builds the
backbone registry from timm's model list."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import transferkit
from transferkit.registry import factory_parameters, lazy_factory

PROBE = """
import contextlib, io, sys
{body}
heavy = sorted(m for m in ("torch", "torchvision", "timm", "sklearn", "scipy", "matplotlib", "albumentations") if m in sys.modules)
print(",".join(heavy) or "-")
"""


def _heavy_modules(body: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_import_transferkit_imports_no_torch():
    assert _heavy_modules("import transferkit\nfrom transferkit import hookimpl, IMAGENET_MEAN, TransferkitError") == "-"


def test_help_imports_no_torch_beyond_what_plugins_import():
    body = ("from transferkit.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main(['--help'])")
    assert _heavy_modules(body, TRANSFERKIT_DISABLE_PLUGINS="*") == "-"


def test_every_public_name_resolves():
    assert sorted(transferkit.__all__) == transferkit.__all__ and len(set(transferkit.__all__)) == len(transferkit.__all__)
    for name in transferkit.__all__:
        assert getattr(transferkit, name) is not None, name
    assert set(transferkit.__all__) <= set(dir(transferkit))


@pytest.mark.parametrize("argv", [
    ["--help"], ["plugins"], ["finetune", "--help"], ["list", "datasets"], ["list", "commands"], ["list", "augmentations"],
    ["list", "averagers"], ["list", "tta"],
])
def test_commands_without_a_model_import_no_torch_with_the_bundled_plugins(argv):
    body = ("from transferkit.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            f"    main({argv!r})")
    assert _heavy_modules(body) == "-"


def test_a_lazy_factory_imports_its_module_only_when_built_or_inspected():
    body = ("from transferkit import lazy_factory\n"
            "f = lazy_factory('transferkit.builtin.augmentations:rotate')\n"
            "assert f.__name__ == 'rotate' and 'albumentations' not in sys.modules")
    assert _heavy_modules(body) == "-"
    factory = lazy_factory("transferkit.builtin.augmentations:rotate")
    assert factory_parameters(factory) == {"limit": "15.0", "p": "0.5"}
    assert type(factory(limit=5.0)).__name__ == "Rotate"
    with pytest.raises(ValueError, match="expected 'package.module:name'"):
        lazy_factory("no_colon")
