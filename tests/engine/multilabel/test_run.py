"""A multi-label run end to end on generated images (two colours side by side, labelled with the
colours they show): what it trains, chooses and writes, and what reads it afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import transferkit
from transferkit.cli import main
from transferkit.errors import TransferkitError
from transferkit.evaluate_multilabel import evaluate_multilabel
from transferkit.testing import make_multilabel_recipe as multilabel_recipe
from transferkit.testing import registered_backbone, write_multilabel_csv, write_recipe
from transferkit.workbench.runs.table import run_row


@pytest.fixture(scope="module")
def backbone() -> Iterator[str]:
    with registered_backbone() as name:
        yield name


@pytest.fixture(scope="module")
def trained(backbone: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One multi-label run (final weights chosen on validation), shared by the tests that read it."""
    root = tmp_path_factory.mktemp("multilabel")
    csv = write_multilabel_csv(root / "data")
    result = transferkit.finetune(multilabel_recipe(csv, backbone, train={"final": "auto"}), output=root / "run", quiet=True)
    return csv, result


def test_a_multilabel_run_learns_every_label_and_writes_its_thresholds(trained: tuple[Path, Any]) -> None:
    _, result = trained
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["task"] == "multilabel" and summary["classes"] == ["blue", "green", "red"]
    assert summary["test"]["macro_map"] > 0.9  # two colours side by side: easy for the tiny CNN
    assert result.test_map == summary["test"]["macro_map"] and result.test_accuracy is None
    assert set(summary["final"]["candidates"]) == {"probe", "wise-0.25", "wise-0.5", "wise-0.75", "finetuned"}
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["task"] == "multilabel" and manifest["thresholds"]["rule"] == "f1"
    assert manifest["thresholds"]["values"] == summary["thresholds"]["values"] and len(manifest["thresholds"]["values"]) == 3
    assert (result.run_dir / "pr_curves.png").is_file() and (result.run_dir / "curves.png").is_file()
    splits = (result.run_dir / "splits.csv").read_text().splitlines()
    assert splits[0] == "split,label,image" and any(";" in line for line in splits[1:])


def test_evaluate_gives_the_figures_the_run_wrote(trained: tuple[Path, Any], capsys: pytest.CaptureFixture[str]) -> None:
    csv, result = trained
    summary = json.loads((result.run_dir / "summary.json").read_text())
    again = evaluate_multilabel(result.run_dir)
    assert again["macro_map"] == pytest.approx(summary["test"]["macro_map"], abs=1e-6)
    assert again["macro_f1"] == pytest.approx(summary["test"]["macro_f1"], abs=1e-6)
    assert evaluate_multilabel(result.run_dir, csv)["n"] == 12  # --data: the CSV's test rows
    assert main(["evaluate", str(result.run_dir)]) == 0
    assert f"macro mAP {summary['test']['macro_map']:.4f}" in capsys.readouterr().out


def test_report_and_runs_speak_its_metric(trained: tuple[Path, Any], tmp_path: Path) -> None:
    _, result = trained
    html, md = transferkit.report(result.run_dir, tmp_path / "report.html", log=lambda _: None)
    text = md.read_text()
    assert "| label | positives | AP | threshold | precision | recall | F1 |" in text and "| red |" in text
    assert (tmp_path / "report-pr.png").stat().st_size > 1000 and "data:image/png;base64" in html.read_text()
    row = run_row(result.run_dir)
    assert row.test.endswith("mAP") and row.val.endswith("mAP")


def test_validate_counts_labels_and_plan_refuses(trained: tuple[Path, Any], backbone: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    csv, _ = trained
    recipe = write_recipe(tmp_path / "r.toml", multilabel_recipe(csv, backbone))
    assert main(["validate", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "3 labels (multi-label)" in out and "positive images per label (train/val/test)" in out
    assert main(["plan", str(recipe)]) != 0
    assert 'task = "multilabel": this command takes single-label recipes' in capsys.readouterr().err


def test_a_run_with_mixup_ema_balanced_weights_and_a_precision_target(backbone: str, tmp_path: Path) -> None:
    csv = write_multilabel_csv(tmp_path / "data", seed=1)
    recipe = multilabel_recipe(csv, backbone, augment={"batch": [{"name": "augment/mixup", "alpha": 0.4}]},
                               averaging={"name": "averaging/ema", "decay": 0.9},
                               multilabel={"pos_weight": "balanced", "threshold": 0.9}, train={"final": "last"})
    result = transferkit.finetune(recipe, output=tmp_path / "run", quiet=True)
    summary = result.summary
    assert summary["final"]["chosen"] == "finetuned" and summary["thresholds"]["rule"] == "precision 0.9"
    assert summary["averager"] == "averaging/ema" and "test_macro_map_averaged" in summary["phases"]["finetune"]
    assert summary["test"]["macro_map"] > 0.8
    met = [p for p, label in zip(summary["thresholds"]["val_precision"], summary["classes"]) if label not in summary["thresholds"]["unmet"]]
    assert all(p >= 0.9 for p in met)


def test_what_a_multilabel_run_does_not_take_is_refused_in_one_line(backbone: str, tmp_path: Path) -> None:
    csv = write_multilabel_csv(tmp_path / "data")
    with pytest.raises(TransferkitError, match="not resumable yet"):
        transferkit.finetune(multilabel_recipe(csv, backbone), resume=tmp_path / "nothing")
    with pytest.raises(TransferkitError, match="a Python dataset"):
        transferkit.finetune(multilabel_recipe(csv, backbone), dataset=[(np.zeros((8, 8, 3), np.uint8), 0)] * 4)


def test_the_trained_run_predicts_the_label_sets_its_thresholds_give(trained: tuple[Path, Any], capsys: pytest.CaptureFixture[str]) -> None:
    csv, result = trained
    model = transferkit.load(result.run_dir)
    images = [str(p) for p in sorted((csv.parent / "images").glob("test_*.png"))[:6]]
    probs = model.predict_proba(images)
    assert probs.shape == (6, 3) and not np.allclose(probs.sum(axis=1), 1.0)  # a sigmoid per label
    for predicted, row in zip(model.predict(images), probs):
        assert set(predicted.labels) == {c for c, p, t in zip(model.classes, row, model.thresholds) if p >= t}
    assert main(["predict", str(result.run_dir), images[0]]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(images[0]) and any(colour in line for colour in model.classes)
