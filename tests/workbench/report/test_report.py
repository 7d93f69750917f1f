"""transferkit report: a self-contained HTML page and Markdown for a finished run, with figures
that match scikit-learn's on the run's own predictions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import classification_report

import transferkit
from transferkit.cli import main
from transferkit.engine.final.calibration import expected_calibration_error, negative_log_likelihood
from transferkit.engine.prepare import build_splits
from transferkit.engine.rundir.model_files import uncalibrated, write_manifest
from transferkit.recipe_loading import load_recipe
from transferkit.testing import make_image
from transferkit.workbench.report.content import build_report


def _weak_run(recipe: dict, output: Path) -> Path:
    """A run trained just enough to be right on some images and wrong on others."""
    recipe["phases"]["extract"].update(epochs=1, lr=0.002, solver="sgd")  # one SGD epoch: the converged probe is right everywhere
    recipe["phases"]["finetune"]["epochs"] = 0
    return transferkit.finetune(recipe, output=output, quiet=True).run_dir


def _predictions(run_dir: Path, split: str):
    images = getattr(build_splits(load_recipe(run_dir / "recipe.toml")), split)
    probs = transferkit.load(run_dir).predict_proba([images.load(i) for i in range(len(images))])
    return images, probs, np.asarray(images.targets)


def test_the_report_shows_sklearns_per_class_figures_and_the_most_confidently_wrong_images(tiny_recipe, tmp_path, capsys):
    run_dir = _weak_run(tiny_recipe, tmp_path / "run")
    html_path, md_path = build_report(run_dir, top_wrong=5)
    assert (html_path, md_path) == (run_dir / "report.html", run_dir / "report.md")
    page = html_path.read_text()

    images, probs, targets = _predictions(run_dir, "test")
    preds = probs.argmax(1)
    expected = classification_report(targets, preds, labels=[0, 1, 2], target_names=images.classes, output_dict=True, zero_division=0)
    for name in images.classes:
        r = expected[name]
        row = (f'<tr><td>{name}</td><td class="num">{r["precision"]:.4f}</td><td class="num">{r["recall"]:.4f}</td>'
               f'<td class="num">{r["f1-score"]:.4f}</td><td class="num">{int(r["support"])}</td></tr>')
        assert row in page
    assert f'<td class="num">{expected["macro avg"]["f1-score"]:.4f}</td>' in page

    wrong = np.flatnonzero(preds != targets)
    assert 0 < len(wrong) < len(targets), "the weak run should be partly right"
    assert page.count('<figure class="tile">') == min(5, len(wrong))
    shown = [float(c) for c in re.findall(r'class="wrong">[^<]*</b> \(([0-9.]+)\)', page)]
    top = sorted(probs[wrong, preds[wrong]], reverse=True)[:5]
    assert shown == pytest.approx(top, abs=6e-4)  # highest confidence first
    assert "predictions on the test split (12 images)" in page

    assert not re.search(r"https?://", page)
    assert all(uri.startswith("data:") for uri in re.findall(r'(?:src|href)="([^"]*)"', page))
    assert page.count('src="data:image/png;base64,') == 4  # curves, confusion matrix, reliability diagram, rejection trade-off
    assert "<pre># The fully resolved recipe" in page and "tiny/cnn" in page

    md = md_path.read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(linked) == ["report-confusion.png", "report-curves.png", "report-reliability.png", "report-tradeoff.png",
                              "report-wrong.png"]
    for name in linked:
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| red |" in md and f"{expected['red']['f1-score']:.4f}" in md and "```toml" in md


def test_the_report_shows_calibration_and_the_rejection_tradeoff_of_its_predictions(tiny_recipe, tmp_path):
    tiny_recipe["train"]["calibrate"] = "always"  # a temperature and a rejection rule fitted on the 9 validation images
    run_dir = _weak_run(tiny_recipe, tmp_path / "run")
    page = build_report(run_dir, log=lambda _m: None)[0].read_text()
    model = transferkit.load(run_dir)
    images, probs, targets = _predictions(run_dir, "test")
    raw = model.predict_proba([images.load(i) for i in range(len(images))], raw=True)
    assert "<h2>Calibration (test)</h2>" in page and "<h2>Rejection trade-off (test)</h2>" in page
    assert f"T = {model.temperature:.4g}, fitted on the validation split" in page
    assert (f"{expected_calibration_error(raw, targets):.4f} uncalibrated, {expected_calibration_error(probs, targets):.4f}"
            " calibrated") in page
    assert f"{negative_log_likelihood(raw, targets):.4f} uncalibrated" in page
    threshold = model.rejection.threshold_for(0.05)
    accepted = probs.max(axis=1) >= threshold
    accuracy = (probs.argmax(1) == targets)[accepted].mean()
    assert f"top probability &lt; {threshold:.4f}: {1 - accepted.mean():.1%} of these images rejected" in page
    assert f"accuracy on the accepted {accuracy:.4f}" in page
    assert 'alt="reliability diagram" src="data:image/png;base64,' in page and 'alt="rejection trade-off" src="data:image/png' in page

    manifest = json.loads((run_dir / "manifest.json").read_text())  # a run from before calibration
    write_manifest(uncalibrated(manifest), run_dir)
    page = build_report(run_dir, log=lambda _m: None)[0].read_text()
    assert "none recorded (a run from before calibration): T = 1" in page and "no rejection rule recorded" in page
    assert f"{expected_calibration_error(raw, targets):.4f} uncalibrated, {expected_calibration_error(raw, targets):.4f}" in page


def test_a_run_without_a_test_split_is_reported_on_its_validation_split(tiny_recipe, image_folder, tmp_path, capsys):
    import shutil

    shutil.rmtree(image_folder / "test")
    run_dir = _weak_run(tiny_recipe, tmp_path / "run")
    out = tmp_path / "elsewhere" / "page.html"
    assert main(["report", str(run_dir), "--output", str(out), "--top-wrong", "2"]) == 0
    page = out.read_text()
    assert "the validation split (9 images): the run has no test split" in page
    assert "Confusion matrix (val)" in page and page.count('<figure class="tile">') <= 2
    assert (tmp_path / "elsewhere" / "page.md").is_file() and (tmp_path / "elsewhere" / "page-confusion.png").is_file()
    assert "report:" in capsys.readouterr().out


def test_class_names_are_escaped_in_the_page(tiny_recipe, tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "odd"
    for split, count in (("train", 8), ("test", 3)):
        for name, colour in (("a<b>&c", (200, 40, 40)), ('say "hi"', (40, 60, 200)), ("plain", (40, 180, 60))):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                make_image(colour, rng).save(root / split / name / f"{i}.png")
    make_image((40, 60, 200), rng).save(root / "test" / "plain" / 'odd<i>&"x".png')  # blue, labelled plain: shown as wrong
    tiny_recipe["data"]["root"] = str(root)
    run_dir = _weak_run(tiny_recipe, tmp_path / "run")
    page = build_report(run_dir, log=lambda _m: None)[0].read_text()
    assert "a&lt;b&gt;&amp;c" in page and "say &quot;hi&quot;" in page
    assert "a<b>" not in page and 'say "hi"' not in page
    assert "odd&lt;i&gt;&amp;&quot;x&quot;.png" in page and "odd<i>" not in page
    assert not re.search(r"https?:", page) and "url(" not in page and "@import" not in page


def test_report_data_dir_and_errors(tiny_recipe, image_folder, tmp_path, capsys):
    run_dir = _weak_run(tiny_recipe, tmp_path / "run")
    assert main(["report", str(run_dir), "--data", str(image_folder), "--output", str(tmp_path / "d.html")]) == 0
    assert f"the images in {image_folder / 'test'} (--data)" in (tmp_path / "d.html").read_text()
    assert main(["report", str(tmp_path)]) == 1
    assert "no recipe.toml; give a finished run directory" in capsys.readouterr().err
    assert main(["report", str(run_dir), "--output", str(tmp_path / "page.txt")]) == 1
    assert "name an .html file" in capsys.readouterr().err
