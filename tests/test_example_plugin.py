"""The example third-party plugin (examples/acme-plugin), installed the way a user installs it.

pip builds a copy of the example into a throwaway ``--target`` folder (with its dist-info, so the
entry point is found through ``importlib.metadata``) and the CLI runs in subprocesses with that
folder on ``PYTHONPATH`` (several commands through the CLI's main() in one of them, where one
process shows what several would): the developer's .venv and the example's source folder stay unchanged.
Then: ``transferkit plugins`` and ``list`` show it, its recipe trains end to end with both of its
components, the run evaluates and predicts, and the example's own tests pass.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transferkit.testing import write_image_folder

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "acme-plugin"


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``source``: a copy of the example; ``site``: the copy installed with ``pip --target``;
    ``before``: the distributions installed before."""
    before = _installed()
    base = tmp_path_factory.mktemp("acme")
    source = base / "acme-plugin"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    site = base / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-q", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {"source": source, "site": site, "before": before}


def _installed() -> set[tuple[str, str, str]]:
    """The distributions this process sees (the .venv's): name, version, where."""
    return {(d.metadata["Name"], d.version, str(getattr(d, "_path", ""))) for d in metadata.distributions()}


def _run(args: list[str], site: Path, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")])),
        "TRANSFERKIT_STRICT_PLUGINS": "1",  # a plugin that fails to load is an error here, not a warning
        "TRANSFERKIT_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


SEPARATOR = "=" * 8


def _cli(commands: list[list[str]], site: Path) -> list[str]:
    """The standard output of each command, run one after the other by the CLI's main() in one
    subprocess (each interpreter start imports torch and timm); each must succeed."""
    script = (f"from transferkit.cli import main\nfor a in {commands!r}:\n    code = main(a)\n"
              f"    print({SEPARATOR!r}, flush=True)\n    assert code == 0, (a, code)")
    done = _run(["-c", script], site)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    *outputs, rest = done.stdout.split(SEPARATOR + "\n")
    assert len(outputs) == len(commands) and not rest.strip(), done.stdout
    return outputs


@pytest.mark.slow
def test_installed_with_its_dist_info_and_nothing_in_the_venv(acme: dict) -> None:
    assert (acme["site"] / "transferkit_acme" / "plugin.py").is_file()
    dist_info = acme["site"] / "transferkit_acme-0.1.0.dist-info"
    assert "acme = transferkit_acme.plugin" in (dist_info / "entry_points.txt").read_text()
    assert _installed() == acme["before"]  # the developer's environment is as it was


@pytest.mark.slow
def test_plugins_and_list_show_acme_and_its_components(acme: dict) -> None:
    """``transferkit plugins``, ``list backbones`` and ``list augmentations``: the CLI's main() in
    one subprocess (each interpreter start imports torch and timm)."""
    commands = [["plugins"], ["list", "backbones", "--filter", "acme/*"], ["list", "augmentations", "--filter", "acme/*"]]
    plugins, backbones, augmentations = _cli(commands, acme["site"])

    header, *rows = plugins.splitlines()
    row = next((r for r in rows if r.split()[:1] == ["acme"]), None)
    assert row is not None, plugins
    cells = dict(zip(header.split(), row.split()))  # the one-word columns before the hooks
    assert cells["package"] == "transferkit-acme" and cells["version"] == "0.1.0"
    assert "register_augmentations, register_backbones" in row and row.rstrip().endswith("ok")

    row = next(r for r in backbones.splitlines() if r.startswith("acme/tinyconvnet"))
    assert row.split()[1] == "acme" and "(width=16, depth=3)" in row
    row = next(r for r in augmentations.splitlines() if r.startswith("acme/posterize_noise"))
    assert row.split()[1] == "acme" and "[image]" in row and "(bits=4, noise=8.0, p=0.5)" in row


@pytest.mark.slow
def test_recipe_with_both_components_trains_evaluates_and_predicts(acme: dict, tmp_path: Path) -> None:
    images = write_image_folder(tmp_path / "images", {"train": 12, "test": 4})
    run = tmp_path / "run"
    recipe = EXAMPLE / "recipe.toml"  # the example's recipe as shipped, pointed at generated images
    overrides = ["data.source=imagefolder", f"data.root={images}", "data.batch_size=8", "data.val_fraction=0.25",
                 "phases.extract.epochs=1", "phases.finetune.epochs=2",
                 "train.final=last"]  # the components in a run: no choice among WiSE-FT candidates, no cross-fitting
    picture = next((images / "test" / "red").iterdir())
    _, evaluated, predicted = _cli([["finetune", str(recipe), "--output", str(run), *[a for o in overrides for a in ("--set", o)]],
                                    ["evaluate", str(run)], ["predict", str(run), str(picture), "--top-k", "2"]], acme["site"])

    assert (run / "model.safetensors").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["backbone"]["name"] == "acme/tinyconvnet" and manifest["backbone"]["params"] == {"width": 16, "depth": 3}
    resolved = (run / "recipe.toml").read_text()
    assert 'name = "acme/posterize_noise"' in resolved and "bits = 4" in resolved
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["top1"] > 0.5, summary["test"]  # three colour classes: chance is 1/3

    assert "top1" in evaluated and "on 12 images" in evaluated
    path, ranked = predicted.strip().split("\t")
    assert path == str(picture) and ranked.split()[0] in {"red", "green", "blue"}


@pytest.mark.slow
def test_the_examples_own_tests_pass_against_the_installed_copy(acme: dict) -> None:
    done = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], acme["site"], cwd=acme["source"])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
