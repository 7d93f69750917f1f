"""The end of a run fits a temperature and a rejection rule to the final weights on validation,
records them in the manifest and the summary, draws the reliability diagram, and measures the
rule on the test split and on ``data.unknown``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import transferkit
from transferkit.cli import main
from transferkit.engine.final.calibration import calibrate, softmax
from transferkit.engine.final.rejection import auroc
from transferkit.evaluate_run import evaluation_images
from transferkit.testing import registered_backbone, write_recipe

from ..confidence_testdata import overlapping_recipe, unknown_folder, write_overlapping_folder


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    """A tiny run on overlapping classes with an unknown folder (trained once for this module;
    tests that load it take ``tiny_backbone`` too)."""
    root = tmp_path_factory.mktemp("calibrated")
    with registered_backbone():
        data = write_overlapping_folder(root / "images", {"train": 30, "test": 10})
        unknown = unknown_folder(root / "unknown")
        result = transferkit.finetune(overlapping_recipe(data, unknown=str(unknown)), output=root / "run", quiet=True)
    return result.run_dir, unknown


def test_the_manifest_temperature_is_the_nll_fit_of_the_final_weights_on_validation(calibrated_run, tiny_backbone):
    run_dir, _ = calibrated_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    model = transferkit.load(run_dir)
    val = model.predictions(evaluation_images(run_dir, split="val").images, raw=True)
    assert (val.preds != val.targets).any(), "the overlapping classes should leave mistakes on validation"
    refit = calibrate(val.logits, val.targets)
    assert manifest["calibration"]["temperature"] == pytest.approx(refit.temperature, rel=1e-3)
    assert summary["calibration"]["temperature"] == manifest["calibration"]["temperature"] == model.temperature
    assert summary["calibration"]["val"]["nll_after"] <= summary["calibration"]["val"]["nll_before"] + 1e-9
    assert summary["calibration"]["val"]["n"] == manifest["calibration"]["n"] == len(val.targets)
    # the rule holds the validation images' calibrated top probabilities
    scores = np.sort(softmax(val.logits, model.temperature).max(axis=1))
    assert np.allclose(manifest["rejection"]["validation_scores"], scores, atol=1e-5)
    assert (run_dir / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_summary_measures_rejection_on_test_and_on_the_unknown_images(calibrated_run, tiny_backbone):
    run_dir, unknown = calibrated_run
    summary = json.loads((run_dir / "summary.json").read_text())
    rejection, test = summary["rejection"], summary["calibration"]["test"]
    assert test["n"] == 30 and test["ece_before"] >= 0 and test["ece_after"] >= 0
    model = transferkit.load(run_dir)
    test_images = evaluation_images(run_dir, split="test").images
    known = model.predictions(test_images).probs.max(axis=1)
    unknown_files = sorted(str(p) for p in unknown.glob("*.png"))
    unknown_scores = model.predict_proba(unknown_files).max(axis=1)
    assert rejection["unknown"]["n"] == 8 and rejection["unknown"]["against"] == "test"
    assert rejection["unknown"]["auroc"] == pytest.approx(auroc(known, unknown_scores), abs=1e-6)
    threshold = rejection["threshold_at_rate"]
    accepted = known >= threshold
    assert rejection["test"]["rejected"] == pytest.approx(1 - accepted.mean())
    correct = model.predictions(test_images).preds == np.asarray(test_images.targets)
    assert rejection["test"]["accuracy_accepted"] == pytest.approx(correct[accepted].mean())
    assert "unknown images" in rejection["chosen_by"] and rejection["threshold"] == model.rejection.threshold


def test_a_run_without_validation_stays_uncalibrated(tiny_recipe, tmp_path, capsys):
    tiny_recipe["data"]["val_fraction"] = 0.0
    tiny_recipe["train"]["calibrate"] = "always"  # even then: there is nothing to fit on
    run_dir = transferkit.finetune(tiny_recipe, output=tmp_path / "run", quiet=True).run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "calibration" not in manifest and "rejection" not in manifest and transferkit.load(run_dir).temperature == 1.0
    assert not (run_dir / "reliability.png").exists()
    image = str(sorted((tmp_path / "images" / "test" / "red").glob("*.png"))[0])
    assert main(["predict", str(run_dir), image, "--reject", "0.05"]) == 2
    err = capsys.readouterr().err
    assert _error_lines(err) == 1 and "no rejection rule" in err


def test_a_missing_unknown_folder_is_one_line_and_writes_nothing(tiny_recipe, tmp_path, capsys):
    tiny_recipe["data"]["unknown"] = str(tmp_path / "nowhere")
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["finetune", str(recipe), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert _error_lines(err) == 1 and "data.unknown" in err and "not a folder" in err
    assert not (tmp_path / "run").exists()


def _error_lines(err: str) -> int:
    """The lines of stderr that are errors (a command may say what it starts first)."""
    return sum(line.startswith("transferkit: error:") for line in err.splitlines())


def test_too_few_validation_images_fit_no_temperature_and_say_so(tmp_path, tiny_backbone):
    """train.calibrate = "auto" (the default) fits nothing on fewer than 50 images: on 9
    validation images a temperature made test ECE worse in 4 of 5 small runs."""
    from transferkit.engine.final.confidence import MIN_IMAGES
    from transferkit.engine.run import run_recipe
    from transferkit.recipe_loading import load_recipe
    from transferkit.testing import make_recipe, write_image_folder

    root = write_image_folder(tmp_path / "images")
    lines: list[str] = []
    recipe = make_recipe(root, tiny_backbone, phases={"finetune": {"epochs": 1}}, train={"calibrate": "auto"})
    result = run_recipe(load_recipe(recipe), output=tmp_path / "run", log=lines.append)
    assert "calibration" not in result.summary
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "calibration" not in manifest
    notice = [line for line in lines if "too few to fit a temperature" in line]
    assert len(notice) == 1 and f"at least {MIN_IMAGES}" in notice[0] and "9 validation images" in notice[0]
