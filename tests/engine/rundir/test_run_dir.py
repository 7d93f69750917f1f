"""The run folder records which image went to which split (``splits.csv``), and evaluation uses
that record rather than splitting the data again."""

from __future__ import annotations

import csv

import tomllib

import transferkit
from transferkit.engine.rundir.run_dir import RunDir


def test_splits_csv_lists_every_image_of_every_split_with_its_label(tiny_run, image_folder):
    rows = RunDir(tiny_run).read_splits()
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert sum(r["split"] == "test" for r in rows) == 12 and sum(r["split"] != "test" for r in rows) == 36
    for row in rows:
        assert row["image"].endswith(".png") and f"/{row['label']}/" in row["image"]
    with open(tiny_run / "splits.csv", newline="") as fh:
        assert next(csv.reader(fh)) == ["split", "label", "image"]


def test_evaluate_uses_the_recorded_test_split_not_the_recipe(tiny_run, tmp_path):
    recipe = tiny_run / "recipe.toml"
    before = transferkit.evaluate(tiny_run)
    root = tomllib.loads(recipe.read_text())["data"]["root"]
    recipe.write_text(recipe.read_text().replace(root, str(tmp_path / "moved")))  # the recipe's data is gone
    assert transferkit.evaluate(tiny_run) == before and before["n"] == 12
