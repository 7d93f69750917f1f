"""``transferkit suggest RUN --pool DIR``: the CSV and contact sheet, never one of the run's images
(a pool holding them is refused in one line; a byte-identical copy is left out), bad input."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from transferkit.cli import main
from transferkit.engine.rundir.run_dir import RunDir
from transferkit.errors import DataError
from transferkit.testing import write_image_folder
from transferkit.workbench.suggest.pool import suggest


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "pool", {"unlabelled": 4}, seed=7)


def _own_images(run: Path) -> set[Path]:
    return {Path(row["image"]).resolve() for row in RunDir(run).read_splits()}


def test_suggest_writes_a_csv_to_fill_in_and_a_self_contained_sheet(tiny_run, pool, tmp_path):
    labelled = sorted(_own_images(tiny_run))
    copy = pool / "copy_of_a_train_image.png"
    shutil.copyfile(next(p for p in labelled if "/train/" in str(p)), copy)
    result = suggest(tiny_run, pool, 20, output=tmp_path / "out", log=None)
    rows = list(csv.DictReader((tmp_path / "out" / "suggest.csv").open()))
    assert [r["rank"] for r in rows] == [str(i) for i in range(1, 13)]  # the 12 new images, ranked
    assert all(r["label"] == "" and r["suggested_label"] in ("red", "green", "blue") for r in rows)
    proposed = {Path(r["path"]).resolve() for r in rows}
    assert not proposed & _own_images(tiny_run) and copy.resolve() not in proposed
    assert result.left_out == [copy] and result.pool_size == 12
    page = (tmp_path / "out" / "suggest.html").read_text()
    assert page.count("<figure") == 12 and "data:image/jpeg;base64," in page and 'src="/' not in page


def test_a_pool_holding_the_runs_images_is_refused_in_one_line(tiny_run, tmp_path):
    data = Path(RunDir(tiny_run).read_splits()[0]["image"]).parents[2]
    assert main(["suggest", str(tiny_run), "--pool", str(data), "--output", str(tmp_path / "out")]) != 0
    with pytest.raises(DataError, match=r"of its images are the run's own .*train.* images \(first: ") as info:
        suggest(tiny_run, data, 5, output=tmp_path / "out", log=None)
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("what", ["empty", "missing", "count"])
def test_bad_input_is_one_line(tiny_run, pool, tmp_path, what):
    empty = tmp_path / "empty"
    empty.mkdir()
    target = {"empty": empty, "missing": tmp_path / "nope", "count": pool}[what]
    match = {"empty": "no image files in it", "missing": "not a folder", "count": "--count 0: give 1 or more"}[what]
    with pytest.raises(Exception, match=match) as info:
        suggest(tiny_run, target, 0 if what == "count" else 5, output=tmp_path / "out", log=None)
    assert "\n" not in str(info.value)
