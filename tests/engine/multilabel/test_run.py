"""A multi-label run end to end on generated images: what it trains, chooses and writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.data.multilabel_csv import read_multilabel_csv
from transferkit.testing import make_recipe, write_multilabel_csv

pytestmark = pytest.mark.usefixtures("tiny_backbone")


def multilabel_recipe(csv: Path, backbone: str, **sections):
    recipe = make_recipe(csv, backbone, **sections)
    recipe["task"] = "multilabel"
    recipe["data"]["source"] = "csv"
    return recipe


@pytest.fixture
def labels_csv(tmp_path: Path) -> Path:
    return write_multilabel_csv(tmp_path / "data")


def test_a_multilabel_run_learns_every_label_and_writes_its_thresholds(labels_csv: Path, tiny_backbone: str, tmp_path: Path) -> None:
    recipe = multilabel_recipe(labels_csv, tiny_backbone, train={"final": "auto"})
    result = transferkit.finetune(recipe, output=tmp_path / "run", quiet=True)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["task"] == "multilabel" and summary["classes"] == ["blue", "green", "red"]
    assert summary["test"]["macro_map"] > 0.9  # two colours side by side: easy for the tiny CNN
    assert result.test_map == summary["test"]["macro_map"] and result.test_accuracy is None
    assert summary["final"]["chosen"] in ("probe", "wise-0.25", "wise-0.5", "wise-0.75", "finetuned")
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["task"] == "multilabel" and manifest["thresholds"]["rule"] == "f1"
    assert len(manifest["thresholds"]["values"]) == 3
    assert (result.run_dir / "pr_curves.png").is_file() and (result.run_dir / "curves.png").is_file()
    splits = (result.run_dir / "splits.csv").read_text().splitlines()
    assert splits[0] == "split,label,image" and any(";" in line for line in splits[1:])


def test_the_validation_split_is_carved_keeping_every_label(labels_csv: Path) -> None:
    data = read_multilabel_csv(labels_csv, val_fraction=0.25, seed=0)
    counts = data.counts()
    assert set(counts) == {"train", "val", "test"}
    assert all(counts["val"][label] > 0 for label in data.labels)
    rows = np.concatenate([data.splits.train.targets, data.splits.val.targets])
    assert len(set(rows.tolist())) == len(rows) == 36  # every training row in exactly one part
