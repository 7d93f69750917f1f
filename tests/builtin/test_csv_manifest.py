"""CSV manifests as people write them (by hand, by Excel): what is tolerated, refused and warned,
through ``validate`` and ``finetune`` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferkit.builtin.csv_manifest import read_manifest
from transferkit.builtin.datasets import csv_manifest
from transferkit.cli import main
from transferkit.errors import DataError
from transferkit.testing import make_recipe, write_recipe

README = Path(__file__).resolve().parents[2] / "README.md"


def _rows(image_folder: Path) -> list[tuple[str, str]]:
    """(path relative to image_folder, class) of every training image of the tiny folder."""
    return [(str(p.relative_to(image_folder)), p.parent.name) for p in sorted((image_folder / "train").rglob("*.png"))]


def _write(path: Path, lines: list[str], bom: bool = False) -> Path:
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def _csv_recipe(tmp_path: Path, manifest: Path, backbone: str) -> Path:
    return write_recipe(tmp_path / "csv.toml", make_recipe(manifest, backbone, data={"source": "csv"}))


def test_a_bom_and_spaces_around_names_and_values_are_tolerated(image_folder):
    rows = _rows(image_folder)
    manifest = _write(image_folder / "m.csv", [" Path , Label "] + [f" {p} , {c} " for p, c in rows], bom=True)
    splits = csv_manifest(str(manifest), val_fraction=0.25, test_fraction=0.25)
    assert splits.classes == ["blue", "green", "red"] and not splits.notes
    assert len(splits.train) + len(splits.val) + len(splits.test) == len(rows)


def test_the_header_found_is_shown(image_folder):
    manifest = _write(image_folder / "m.csv", ["file,class", "train/red/x.png,red"])
    with pytest.raises(DataError, match=r"m.csv: the header is 'file', 'class'; expected columns path,label\[,split\]"):
        read_manifest(manifest)
    semicolons = _write(image_folder / "s.csv", ["path;label", "train/red/x.png;red"])
    with pytest.raises(DataError, match=r"it seems to use ';' as separator: save it with commas"):
        read_manifest(semicolons)


def test_validate_reads_the_csv_and_an_empty_label_is_an_error(image_folder, tiny_backbone, tmp_path, capsys):
    rows = _rows(image_folder)
    lines = ["path,label"] + [f"{p},{c}" for p, c in rows]
    lines[5] = lines[5].rsplit(",", 1)[0] + ","  # line 6 of the file: no label
    recipe = _csv_recipe(tmp_path, _write(image_folder / "m.csv", lines), tiny_backbone)
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("m.csv: 1 row(s) have an empty label: line 6; fix or remove them") and "\n" not in err


def test_near_identical_labels_are_warned(image_folder, tiny_backbone, tmp_path, capsys):
    rows = _rows(image_folder)
    labels = {"red": "Red", "green": "green", "blue": "blue"}
    lines = ["path,label"] + [f"{p},{labels[c] if i % 2 else c}" for i, (p, c) in enumerate(rows)]
    lines.append(f"{rows[0][0]},blue;green")
    recipe = _csv_recipe(tmp_path, _write(image_folder / "m.csv", lines), tiny_backbone)
    assert main(["validate", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "labels 'Red', 'red' differ only in case, spaces, '-' or '_' and make 2 classes" in out
    assert "labels 'blue;green' look like several labels in one" in out
    assert "data: " in out and " 5 classes" in out


def test_missing_files_are_capped_in_the_error_and_all_listed_in_the_run(image_folder, tiny_backbone, tmp_path, capsys):
    rows = _rows(image_folder)
    lines = ["path,label"] + [f"{p},{c}" for p, c in rows] + [f"gone/missing_{i}.png,red" for i in range(30)]
    recipe = _csv_recipe(tmp_path, _write(image_folder / "m.csv", lines), tiny_backbone)
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "30 bad image(s): " in err and "; ... and 25 more; fix the paths (a CSV's paths are relative to its folder)" in err
    assert len(err) < 1000
    assert main(["finetune", str(recipe), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    listed = tmp_path / "run" / "bad_images.txt"
    assert f"... and 25 more (all listed in {listed})" in err and len(err) < 1000
    assert len(listed.read_text().splitlines()) == 30


def test_readme_says_csv_paths_are_relative_to_the_csv():
    assert "paths are relative to the CSV's folder" in README.read_text()
