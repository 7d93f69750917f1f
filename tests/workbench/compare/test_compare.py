"""``transferkit compare RUN_A RUN_B``: McNemar's exact test and per-class differences on the same images."""

from __future__ import annotations

import shutil

import pytest
import torch

from transferkit.cli import main
from transferkit.engine.rundir.model_files import read_weights, write_weights
from transferkit.workbench.compare.paired import compare_runs, mcnemar_exact


@pytest.mark.parametrize("b, c, p", [(0, 0, 1.0), (1, 9, 0.021484375), (5, 5, 1.0), (0, 6, 0.03125), (10, 3, 0.09228515625)])
def test_mcnemar_exact_p_values(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p)  # 2 * P(Binomial(b + c, 1/2) <= min(b, c)), at most 1


def test_compare_two_runs_on_the_same_images(tiny_run, tmp_path, capsys):
    broken = shutil.copytree(tiny_run, tmp_path / "broken")
    state = read_weights(broken / "model.safetensors")
    state["head.weight"].zero_()
    state["head.bias"][:] = torch.tensor([1.0, 0.0, 0.0])  # always answers the first class (blue)
    write_weights(state, broken)  # with its checksum, as a model file written by transferkit
    comparison = compare_runs(tiny_run, broken)
    assert comparison.only_b == 0 and comparison.only_a == 8  # the 8 green and red test images
    assert main(["compare", str(tiny_run), str(broken)]) == 0
    out = capsys.readouterr().out
    assert "only A right 8, only B right 0" in out and "McNemar exact test on the 8 disagreements: p = 0.007812" in out
    assert "  blue " in out and "B - A -1.000  (4 images)" in out


def test_an_unreadable_image_is_named_not_silently_left_out(tiny_run, image_folder, capsys):
    (image_folder / "test" / "red" / "broken.png").write_bytes(b"not a png at all")
    assert main(["compare", str(tiny_run), str(tiny_run), "--data", str(image_folder)]) == 0
    out = capsys.readouterr().out
    assert "on " in out and "skipped 1 image(s) that could not be read (not compared): " in out and "broken.png" in out
