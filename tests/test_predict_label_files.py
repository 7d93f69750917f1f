"""``transferkit predict`` with a multi-label run (issue 26): each line names the labels above their
thresholds with their probabilities (``(none)`` when no label is), or with ``--top-k`` the K most
probable; ``--output`` CSV (``path,labels`` then one probability column per label) and JSON;
``--reject`` refused in one line; unreadable files still reported and skipped."""

from __future__ import annotations

import csv
import json

import pytest

import transferkit
from transferkit.cli import main

from .multilabel_runs import LABELS, image_files, labelled_images, multilabel_run, set_thresholds  # noqa: F401 (fixtures)


def _lines(out: str) -> dict[str, str]:
    return dict(line.split("\t") for line in out.splitlines() if "\t" in line)


def test_each_line_is_the_labels_above_their_thresholds_with_their_probabilities(multilabel_run, labelled_images, capsys):
    model = transferkit.load(multilabel_run)
    files = image_files(labelled_images)
    answers = dict(zip(files, model.predict(files)))
    assert main(["predict", str(multilabel_run), str(labelled_images / "test")]) == 0
    lines = _lines(capsys.readouterr().out)
    assert sorted(lines) == sorted(files)
    for file, shown in lines.items():
        answer = answers[file]
        expected = "  ".join(f"{name} {answer.probabilities[name]:.3f}" for name in answer.labels) or "(none)"
        assert shown == expected
    assert any(shown.count("  ") >= 1 for shown in lines.values())  # several labels on one line
    set_thresholds(multilabel_run, [1.0] * len(LABELS))
    assert main(["predict", str(multilabel_run), files[0]]) == 0
    assert _lines(capsys.readouterr().out) == {files[0]: "(none)"}


def test_top_k_shows_the_most_probable_labels_whatever_their_thresholds(multilabel_run, labelled_images, capsys):
    set_thresholds(multilabel_run, [1.0] * len(LABELS))  # none passes: top-k does not care
    model = transferkit.load(multilabel_run)
    files = image_files(labelled_images)
    answers = dict(zip(files, model.predict(files, top_k=3)))
    assert main(["predict", str(multilabel_run), str(labelled_images / "test"), "--top-k", "3"]) == 0
    for file, shown in _lines(capsys.readouterr().out).items():
        assert shown == "  ".join(f"{name} {p:.3f}" for name, p in answers[file].top_k) and shown.count("  ") == 2


def test_output_csv_and_json_hold_the_labels_and_every_probability(multilabel_run, labelled_images, tmp_path, capsys):
    model = transferkit.load(multilabel_run)
    files = image_files(labelled_images)
    answers = dict(zip(files, model.predict(files)))
    bad = tmp_path / "photos"
    bad.mkdir()
    (bad / "notes.png").write_text("not an image")
    assert main(["predict", str(multilabel_run), str(labelled_images / "test"), str(bad), "--output", str(tmp_path / "p.csv")]) == 1
    assert "transferkit: skipped " in capsys.readouterr().err
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "labels", *LABELS] and sorted(r["path"] for r in rows) == sorted(files)
    for row in rows:
        answer = answers[row["path"]]
        assert row["labels"] == ";".join(answer.labels)
        assert {name: float(row[name]) for name in LABELS} == pytest.approx(answer.scores, abs=1e-6)
    assert any(";" in r["labels"] for r in rows) and any(abs(sum(float(r[n]) for n in LABELS) - 1) > 0.1 for r in rows)

    assert main(["predict", str(multilabel_run), str(labelled_images / "test"), str(bad), "--output", str(tmp_path / "p.json")]) == 1
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["task"] == "multilabel" and data["classes"] == LABELS
    assert data["thresholds"] == pytest.approx(dict(zip(LABELS, model.thresholds.tolist())))
    assert [s["path"] for s in data["skipped"]] == [str(bad / "notes.png")]
    for record in data["predictions"]:
        answer = answers[record["path"]]
        assert record["labels"] == answer.labels and record["probabilities"] == pytest.approx(answer.scores, abs=1e-6)


def test_reject_is_refused_before_anything_is_predicted(multilabel_run, labelled_images, capsys):
    assert main(["predict", str(multilabel_run), str(labelled_images / "test"), "--reject", "0.05"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines()[-1] == (
        f"transferkit: error: --reject: {multilabel_run} is a multi-label run: each label has its own threshold instead of a"
        " rejection rule (an image no label reaches gets none); leave out --reject")
