"""benchmarks/multilabel_data.py's composites (labels, splits kept apart, photo uses, determinism)
and benchmarks/multilabel.py's reading of a recipe run and its report, without a backbone."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.data.multilabel_labels import split_labels

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import multilabel  # noqa: E402

CLASSES = ("red", "green", "blue", "grey-ish")


def _source(root: Path) -> Path:
    for split, count in (("train", 6), ("test", 4)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                colour = [40 * i, 0, 0] if c == 0 else [0, 40 * i, 0] if c == 1 else [0, 0, 40 * i] if c == 2 else [90 + i] * 3
                Image.new("RGB", (30 + i, 20), tuple(colour)).save(folder / f"{i}.png")
    return root


def _build(source: Path, out: Path) -> None:
    subprocess.run([sys.executable, str(BENCH / "multilabel_data.py"), str(source), str(out), "--train", "20", "--test", "10",
                    "--size", "32", "--seed", "3"], check=True, capture_output=True)


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "README.md")).hexdigest()


def test_composites_are_labelled_by_their_cells_and_keep_splits_apart(tmp_path):
    source = _source(tmp_path / "src")
    _build(source, tmp_path / "a")
    _build(source, tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")  # deterministic for a seed
    rows = list(csv.DictReader(open(tmp_path / "a" / "labels.csv")))
    assert Counter(r["split"] for r in rows) == {"train": 20, "test": 10}
    cells = list(csv.DictReader(open(tmp_path / "a" / "sources.csv")))
    for row in rows:
        mine = [c for c in cells if c["path"] == row["path"]]
        assert 1 <= len(mine) <= 4 and len({c["cell"] for c in mine}) == len(mine) and len({c["source"] for c in mine}) == len(mine)
        assert all(c["source"].startswith(row["split"] + "/") for c in mine)
        labels = split_labels(row["label"])
        assert list(labels) == sorted({c["label"] for c in mine}) and 1 <= len(labels) <= 3
        assert Image.open(tmp_path / "a" / row["path"]).size == (32, 32)
    assert max(Counter(c["source"] for c in cells).values()) <= 3
    assert "positives: grey-ish" in (tmp_path / "a" / "README.md").read_text()


def test_recipe_case_reads_the_summary_and_the_report_compares(tmp_path, monkeypatch):
    summary = {"test": {"macro_map": 0.8, "micro_map": 0.85, "macro_f1": 0.7, "subset_accuracy": 0.5, "per_label_ap": {"a": 0.9, "b": 0.7}},
               "final": {"chosen": "wise-0.5"}}

    def fake_run(command, **kwargs):
        run = Path(command[command.index("--output") + 1])
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps(summary))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(multilabel.subprocess, "run", fake_run)
    result = multilabel.recipe(tmp_path / "labels.csv", "recipes/multilabel.toml", [], tmp_path)
    assert result["macro_map"] == 0.8 and result["chosen"] == "wise-0.5"

    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    probe = multilabel.scores(targets, np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6], [0.2, 0.1]]), ["a", "b"])
    assert probe["macro_map"] == 1.0 and probe["subset_accuracy"] == 1.0
    row = {"name": "toy", "source": "src", "labels": ["a", "b"], "train_images": 8, "test_images": 4,
           "positives": {"a": [4, 2], "b": [4, 2]}, "probe": {"C1": {**probe, "seconds": 1.0}}, "recipe": result}
    args = argparse.Namespace(recipe="recipes/multilabel.toml", display=["toy/labels.csv"], only="probe,recipe", backbone="x",
                              reuse=None, reused=set())
    text = "\n".join(multilabel.report([row], args, "here", 1.0))
    assert "| toy | 2 | 8 / 4 | 1.0000 / 1.0000 (1 s) | — | 0.8000 / 0.8500 (0 s) | -0.2000 | 0.7000 / 0.5000 | wise-0.5 |" in text
