"""Start-up cost: ``import transferkit``, building the command line and the commands that need no
model (``--help``, ``plugins``, ``list datasets``) import no torch, with the bundled plugins
installed (their entry points are lazy too), and every public name resolves.

``list backbones`` and ``validate`` import no torch either once the built-in backbones' catalog and
the recipe's backbone profile are in the cache folder (the first command after installing timm
builds them); without a GPU device file, ``train.device = "auto"`` is the CPU without asking torch."""

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


def test_list_backbones_and_validate_import_no_torch_once_the_cache_is_filled(tmp_path):
    from transferkit.testing import write_image_folder

    data = write_image_folder(tmp_path / "images")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\n[data]\nsource = "imagefolder"\nroot = "{data.as_posix()}"\nimage_size = 64\nbatch_size = 4\n'
                      '[backbone]\nname = "timm/tf_efficientnet_lite0"\nweights = "none"\n[train]\ndevice = "cpu"\n')
    cache = {"TRANSFERKIT_CACHE_DIR": str(tmp_path / "cache")}
    for argv in (["list", "backbones", "--filter", "timm/tf_eff*"], ["validate", str(recipe)]):
        body = ("from transferkit.cli import main\n"
                "with contextlib.redirect_stdout(io.StringIO()):\n"
                f"    assert main({argv!r}) == 0")
        assert "torch" in _heavy_modules(body, **cache).split(",")  # the first time: the catalog and profile are built
        assert _heavy_modules(body, **cache) == "-", argv  # then from the cache folder
    assert {p.name for p in (tmp_path / "cache").iterdir()} >= {"memory-profiles.json"}
