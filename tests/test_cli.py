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
