"""transferkit audit on a generated folder with planted issues: label flips, a copied and a
re-encoded train image in test (leaks), a duplicate within train, an outlier; the CSV's order,
the page's self-containment and escaping, the command's exit code and counts."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.cli import main
from transferkit.data.decoding import DecodeReport
from transferkit.engine.prepare import check_decoded
from transferkit.recipe_loading import load_recipe
from transferkit.testing import write_recipe
from transferkit.workbench.audit.findings import KINDS
from transferkit.workbench.audit.scan import audit

from ..audit_testdata import audit_recipe_dict, planted_folder, pooled_pixels_registered


@pytest.fixture
def planted(tmp_path: Path):
    """A generated folder with planted issues (see ``audit_testdata.plant_issues``), audited with
    a backbone whose features are the pooled pixels."""
    with pooled_pixels_registered():
        yield planted_folder(tmp_path / "images")


def _audit(root: Path, out: Path):
    black = root / "train" / "green" / "black.png"
    Image.fromarray(np.zeros((48, 48, 3), dtype=np.uint8)).save(black)
    return audit(root, audit_recipe_dict(), output=out, log=None), str(black)


def test_audit_finds_the_planted_flips_duplicates_leaks_and_outlier(planted, tmp_path):
    root, truth = planted
    result, black = _audit(root, tmp_path / "out")
    names, classes = result.images.names, result.images.classes
    by_name = {names[f.index]: f for f in result.findings}

    ranked = [names[i] for i in result.label_issues.order[: len(truth["flips"])]]
    assert set(ranked) == set(truth["flips"])
    for path, true_class in truth["flips"].items():
        finding = by_name[path]
        assert "mislabeled" in [finding.kind, *finding.also]
        assert classes[finding.suggested] == true_class

    for copy, original in truth["leaks"].items():
        assert by_name[copy].kind == "leak" and names[by_name[copy].duplicate_of] == original
    assert "same bytes" in by_name[next(iter(truth["leaks"]))].detail
    duplicates = [f for f in result.findings if f.kind == "duplicate"]
    assert [{names[f.index], names[f.duplicate_of]} for f in duplicates] == [truth["duplicate"]]
    assert {names[f.index] for f in result.findings if f.kind == "leak"} == set(truth["leaks"]), "distinct images called leaks"

    outliers = [f for f in result.findings if f.kind == "outlier" or "outlier" in f.also]
    assert max(outliers, key=lambda f: f.score).index == names.index(black)


def test_the_csv_lists_each_flagged_image_once_most_suspect_first(planted, tmp_path):
    root, _ = planted
    result, _ = _audit(root, tmp_path / "out")
    with open(tmp_path / "out" / "audit.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(result.findings) == len({r["path"] for r in rows})
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    order = [(KINDS.index(r["kind"]), -float(r["score"])) for r in rows]
    assert order == sorted(order)
    assert {r["kind"] for r in rows} == set(KINDS)
    assert all(Path(r["path"]).is_file() for r in rows)
    leak = next(r for r in rows if r["kind"] == "leak")
    assert leak["split"] == "test" and Path(leak["duplicate_of"]).is_file()
    mislabeled = next(r for r in rows if r["kind"] == "mislabeled")
    assert mislabeled["suggested_label"] != mislabeled["given_label"]


def test_the_page_is_self_contained_and_escapes_file_names(planted, tmp_path):
    root, truth = planted
    result, _ = _audit(root, tmp_path / "out")
    page = (tmp_path / "out" / "audit.html").read_text()
    assert Path(truth["odd"]).name == "odd<script>&name.png"
    assert "odd&lt;script&gt;&amp;name.png" in page
    assert "<script" not in page
    assert not re.search(r"https?:", page)
    assert all(uri.startswith("data:image/") for uri in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page))
    assert "//" not in re.sub(r'"data:[^"]*"', '""', page)
    assert "url(" not in page and "@import" not in page
    assert page.count('<figure class="tile') == len(result.findings)


def test_the_command_exits_0_prints_counts_and_writes_both_files(planted, tmp_path, capsys):
    root, _ = planted
    recipe = write_recipe(tmp_path / "r.toml", audit_recipe_dict())
    out = tmp_path / "audit-out"
    assert main(["audit", str(root), "--recipe", str(recipe), "--output", str(out), "--folds", "4"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^\s+leak\s+2\b", printed, re.MULTILINE)
    assert re.search(r"^\s+duplicate\s+1\b", printed, re.MULTILINE)
    assert re.search(r"^\s+mislabeled\s+[1-9]", printed, re.MULTILINE)
    assert re.search(r"^\s+outlier\s+\d", printed, re.MULTILINE)
    assert "images flagged" in printed and "after the features" in printed
    assert (out / "audit.html").is_file() and (out / "audit.csv").is_file()


def test_a_csv_manifest_is_audited_too(planted, tmp_path):
    root, truth = planted
    manifest = tmp_path / "manifest.csv"
    rows = ["path,label,split"] + [f"{p.relative_to(tmp_path)},{p.parent.name},{p.parts[-3]}"
                                   for p in sorted(root.glob("*/*/*")) if "<" not in p.name]
    manifest.write_text("\n".join(rows) + "\n")
    result = audit(manifest, audit_recipe_dict(), output=tmp_path / "out", log=None)
    leaks = {Path(result.images.names[f.index]).name for f in result.findings if f.kind == "leak"}
    assert leaks == {Path(p).name for p in truth["leaks"]}


def test_bad_arguments_are_one_line_errors_with_exit_2(planted, tmp_path, capsys):
    root, _ = planted
    recipe = str(write_recipe(tmp_path / "r.toml", audit_recipe_dict()))
    assert main(["audit", str(root), "--recipe", recipe, "--output", str(root / "audit")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inside the data folder" in err
    assert not (root / "audit").exists()
    assert main(["audit", str(tmp_path / "missing"), "--recipe", recipe]) == 2
    assert "not a folder or a .csv manifest" in capsys.readouterr().err


def test_finetune_names_the_audit_when_test_files_repeat_train_files(tiny_recipe):
    lines: list[str] = []
    recipe = load_recipe(tiny_recipe)
    splits = type("Splits", (), {"train": list(range(64))})()
    check_decoded(recipe, splits, DecodeReport(leaks={"train/test": 2}), lines.append)
    assert len(lines) == 1 and f"transferkit audit {recipe.data.root}" in lines[0]
