"""Start-up cost: ``import transferkit`` and building the command line import no torch (plugins'
own imports aside), and every public name resolves."""

from __future__ import annotations

import os
import subprocess
import sys

import transferkit

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
