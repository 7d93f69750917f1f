"""Reading a multi-label CSV manifest: label sets, the vocabulary, the splits, and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transferkit.data.multilabel_csv import read_multilabel_csv
from transferkit.errors import DataError
from transferkit.testing import write_multilabel_csv


def write_csv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return path


def test_label_cells_become_multi_hot_rows_in_vocabulary_order(tmp_path: Path) -> None:
    rows = ["a.png,dog;grass,train", "b.png,cat,train", "c.png,grass ; cat,train", "d.png,dog,test"]
    data = read_multilabel_csv(write_csv(tmp_path, rows), val_fraction=0.0)
    assert data.labels == ["cat", "dog", "grass"]
    assert data.targets(data.splits.train.targets).tolist() == [[0, 1, 1], [1, 0, 0], [1, 0, 1]]
    assert data.targets(data.splits.test.targets).tolist() == [[0, 1, 0]]
    assert data.splits.train.describe(0).endswith("a.png") and data.splits.val is None


def test_the_separator_is_the_recipes(tmp_path: Path) -> None:
    data = read_multilabel_csv(write_csv(tmp_path, ["a.png,dog|grass,train", "b.png,cat,train"]), separator="|", val_fraction=0.0)
    assert data.labels == ["cat", "dog", "grass"]


@pytest.mark.parametrize(("rows", "message"), [
    (["a.png,dog;;grass,train", "b.png,cat,train"], "line 2"),  # an empty piece: named by its line
    (["a.png,dog;dog,train", "b.png,cat,train"], 'label "dog" twice'),
    (["a.png,dog,train", "b.png,dog;cat,train", "c.png,bird,test"], "labels no training row has"),
    (["a.png,dog,test"], "no row has split train"),
    (["a.png,dog,train", "b.png,dog,train"], "needs at least 2"),
    (["a.png,dog;cat,train", "b.png,dog,train"], "every image has 1 label"),  # dog: no negative to learn from
])
def test_bad_rows_are_one_line_errors_naming_the_file(tmp_path: Path, rows: list[str], message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        read_multilabel_csv(write_csv(tmp_path, rows), val_fraction=0.0)
    assert "labels.csv" in str(caught.value) and "\n" not in str(caught.value)


def test_carved_splits_keep_every_label_and_lose_no_row(tmp_path: Path) -> None:
    data = read_multilabel_csv(write_multilabel_csv(tmp_path, {"train": 20, "test": 4}), val_fraction=0.2, test_fraction=None, seed=3)
    counts = data.counts()
    assert all(counts["val"][label] > 0 and counts["train"][label] > 0 for label in data.labels)
    train, val = np.array(data.splits.train.targets), np.array(data.splits.val.targets)
    assert not set(train) & set(val) and len(train) + len(val) == 60
    again = read_multilabel_csv(tmp_path / "labels.csv", val_fraction=0.2, seed=3)
    assert again.splits.val.targets == data.splits.val.targets  # seeded: the same split again
