"""The built-in dataset sources: the README's own-folder recipe on every layout it names, and the
downloading source that never writes into a user's folder of images."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferkit.builtin.datasets import flowers102, flowers102_root_problem
from transferkit.cli import main
from transferkit.engine.preflight.data_checks import check_data
from transferkit.errors import DataError, RecipeError
from transferkit.recipe_loading import load_recipe
from transferkit.testing import write_image_folder

FLOWERS = Path(__file__).resolve().parents[2] / "recipes" / "flowers.toml"


def _tree(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its size: what a command must leave as it found it."""
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else -1 for p in sorted(root.rglob("*"))}


def _layout(tmp_path: Path, kind: str) -> tuple[Path, list[str]]:
    """A data folder in one of the layouts the README names, and the --set lines that point at it."""
    data = tmp_path / "my_images"
    if kind == "classes":  # my_images/<class>/*.png
        data = write_image_folder(tmp_path, {"my_images": 9}) / "my_images"
        return data, [f"data.root={data}"]
    if kind in ("train+test", "train+val"):
        return write_image_folder(data, {"train": 8, kind.split("+")[1]: 3}), [f"data.root={data}"]
    write_image_folder(data, {"train": 8, "test": 3})
    rows = ["path,label,split"] + [f"{p.relative_to(data)},{p.parent.name},{p.parent.parent.name}" for p in sorted(data.rglob("*.png"))]
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    return data, [f"data.root={data / 'labels.csv'}", "data.source=csv"]


@pytest.mark.parametrize("kind", ["classes", "train+test", "train+val", "csv"])
def test_the_readme_recipe_reads_every_layout_and_writes_nothing_into_it(tmp_path, kind):
    data, overrides = _layout(tmp_path, kind)
    before = _tree(data)
    recipe = load_recipe(FLOWERS, overrides)
    lines = check_data(recipe)  # the source reads the folder or CSV as finetune would
    assert lines[0].startswith("data: ") and "3 classes" in lines[0], lines
    assert _tree(data) == before


def test_the_readme_command_fine_tunes_a_folder_of_class_folders(tmp_path, tiny_backbone, capsys):
    data, overrides = _layout(tmp_path, "classes")
    before = _tree(data)
    sets = overrides + [f"backbone.name={tiny_backbone}", "backbone.weights=none", "data.image_size=32", "data.batch_size=8",
                        "data.val_fraction=0.25", "phases.finetune.epochs=1"]
    argv = ["finetune", str(FLOWERS), "--output", str(tmp_path / "run")]
    assert main(argv + [a for s in sets for a in ("--set", s)]) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert _tree(data) == before


def test_flowers102_refuses_a_folder_of_class_folders_in_one_line_and_writes_nothing(tmp_path):
    data, _ = _layout(tmp_path, "classes")
    before = _tree(data)
    with pytest.raises(DataError) as caught:
        flowers102(str(data))
    message = str(caught.value)
    assert "\n" not in message and str(data) in message and 'data.source = "imagefolder"' in message
    with pytest.raises(RecipeError, match="not Oxford Flowers-102"):  # validate and finetune: before any run folder
        load_recipe(FLOWERS, [f"data.root={data}", "data.source=flowers102"])
    assert _tree(data) == before


def test_flowers102_downloads_only_into_an_empty_or_absent_folder_or_its_own(tmp_path):
    assert flowers102_root_problem(str(tmp_path / "absent")) is None
    (tmp_path / "empty").mkdir()
    assert flowers102_root_problem(str(tmp_path / "empty")) is None
    (tmp_path / "own" / "flowers-102").mkdir(parents=True)
    (tmp_path / "own" / "notes.txt").write_text("mine")
    assert flowers102_root_problem(str(tmp_path / "own")) is None
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.jpg").write_bytes(b"x")
    assert "holds 1 file(s)" in flowers102_root_problem(str(tmp_path / "files"))
