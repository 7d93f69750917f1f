"""``transferkit select``: the table, select.json and select.csv through the command; its
one-line errors (no candidates, an unknown one, an output folder in use)."""

from __future__ import annotations

import csv
import json

import pytest

from transferkit.cli import main
from transferkit.testing import TinyCNN, make_recipe, registered_backbone, write_recipe


@pytest.fixture
def recipe_file(image_folder, tmp_path):
    with registered_backbone() as good, registered_backbone("tiny/wide", lambda pretrained=False: TinyCNN(16)):
        yield write_recipe(tmp_path / "r.toml", make_recipe(image_folder, good)), good


def test_select_ranks_writes_and_recommends(recipe_file, tmp_path, capsys):
    path, good = recipe_file
    assert main(["select", str(path), "--backbones", f"{good},tiny/wide", "--folds", "3", "--output", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "recommended: " in out and "the test split is not read" in out
    data = json.loads((tmp_path / "s" / "select.json").read_text())
    assert {c["backbone"] for c in data["ranking"]} == {good, "tiny/wide"} and data["folds"] == 3
    assert data["recommended"] == data["ranking"][0]["backbone"]
    rows = list(csv.DictReader((tmp_path / "s" / "select.csv").open()))
    assert [r["rank"] for r in rows] == ["1", "2"] and rows[0]["backbone"] == data["recommended"]


@pytest.mark.parametrize(("backbones", "message"), [
    (None, "no candidates: give --backbones"),
    ("tiny/cnn,,tiny/wide", "an empty name"),
    ("tiny/cnn,tiny/nope", "tiny/nope"),
    ("tiny/cnn,tiny/cnn", "named twice"),
])
def test_select_errors_are_one_line(recipe_file, tmp_path, capsys, backbones, message):
    path, _ = recipe_file
    args = ["select", str(path), "--output", str(tmp_path / "s")] + (["--backbones", backbones] if backbones else [])
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()
