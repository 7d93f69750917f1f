"""The command line: plan (no training) and the list/plugins views."""

from __future__ import annotations

from transferkit.cli import main
from transferkit.testing import write_recipe


def test_plan_shows_each_phase_without_training(tiny_recipe, tmp_path, capsys):
    tiny_recipe["phases"]["finetune"].update(unfreeze="last:1", lr_ratio=0.5)
    tiny_recipe["augment"] = {"image": [{"name": "rotate"}]}
    path = write_recipe(tmp_path / "plan.toml", tiny_recipe)
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "27 training images, 3 classes; backbone stages: 2; image augmentations: rotate" in out
    assert "extract: 2 epochs, 51 of " in out and "BN eval" in out and "lr 0.05" in out
    assert "finetune: 2 epochs" in out and "unfreeze last:1" in out and "lr 0.025" in out
    assert "head fitted on cached backbone features as a logistic probe" in out
    assert not (tmp_path / "runs").exists()


def test_a_closed_pipe_ends_a_listing_quietly():
    """``transferkit list backbones | head -1``: no BrokenPipeError traceback."""
    import subprocess
    import sys

    shell = f"{sys.executable} -m transferkit list backbones | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("name") and "Traceback" not in done.stderr, done.stderr
