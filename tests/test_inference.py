"""``transferkit.load(run).predict``: what it takes (a folder, a batch ``[N, H, W, C]`` or
``[N, C, H, W]``, a list) and what it refuses (top_k < 1, a normalised batch); calibrated
probabilities (the run's temperature; ``raw`` for the plain softmax), "unknown" below the
rejection threshold with the closest class, and T = 1 for old runs and other weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import transferkit
from transferkit.cli import main
from transferkit.data.sources import read_image
from transferkit.engine.final.calibration import softmax
from transferkit.engine.final.rejection import fit_rejection
from transferkit.engine.rundir.model_files import write_manifest
from transferkit.errors import DataError, UsageError
from transferkit.inference import TrainedModel

from .conftest import needs_plugin_component


def _files(image_folder, n: int = 12) -> list[str]:
    return [str(f) for f in sorted((image_folder / "test").rglob("*.png"))[:n]]


def _with_confidence(tiny_run, image_folder, temperature: float = 3.0) -> tuple[TrainedModel, np.ndarray]:
    """The tiny run with a temperature and a rejection rule fitted to its own test images' scores
    at that temperature (written through the model-files helper), and the images' raw logits."""
    plain = transferkit.load(tiny_run)
    logits = plain.predictions(transferkit.ArrayImages(_files(image_folder), [0] * 12, plain.classes), raw=True).logits
    rule = fit_rejection(softmax(logits, temperature).max(axis=1))
    manifest = {**plain.manifest, "calibration": {"temperature": temperature}, "rejection": rule.to_manifest()}
    write_manifest(manifest, tiny_run)
    return transferkit.load(tiny_run), logits


def test_probabilities_are_softmax_of_logits_over_the_temperature_and_raw_is_plain(tiny_run, image_folder):
    model, logits = _with_confidence(tiny_run, image_folder, temperature=3.0)
    assert model.temperature == 3.0
    calibrated, raw = model.predict_proba(_files(image_folder)), model.predict_proba(_files(image_folder), raw=True)
    np.testing.assert_allclose(calibrated, softmax(logits, 3.0), atol=1e-5)
    np.testing.assert_allclose(raw, softmax(logits), atol=1e-5)
    assert np.array_equal(calibrated.argmax(1), raw.argmax(1)) and not np.allclose(calibrated, raw, atol=1e-3)
    raw_metrics, metrics = transferkit.evaluate(tiny_run, raw=True), transferkit.evaluate(tiny_run)
    assert raw_metrics["top1"] == metrics["top1"] and raw_metrics["loss"] != metrics["loss"]


def test_predict_answers_unknown_below_the_threshold_with_the_closest_class(tiny_run, image_folder):
    model, logits = _with_confidence(tiny_run, image_folder)
    probs = softmax(logits, model.temperature)
    answers = model.predict(_files(image_folder), top_k=2, reject=0.5)
    threshold = np.quantile(model.rejection.quantiles, 0.5)
    for answer, row in zip(answers, probs):
        closest = model.classes[int(row.argmax())]
        assert answer.closest == closest and answer.probability == pytest.approx(row.max(), abs=1e-5)
        assert answer.rejected == (row.max() < threshold)
        assert answer.label == ("unknown" if answer.rejected else closest) and answer.top_k[0][0] == closest
    assert 3 <= sum(a.rejected for a in answers) <= 9  # about half the images the rule was fitted on
    auto = model.predict(_files(image_folder), reject="auto")  # the run's own threshold: 5% of these
    assert sum(a.rejected for a in auto) == sum(row.max() < model.rejection.threshold for row in probs)
    assert not any(a.rejected for a in model.predict(_files(image_folder)))
    raw = model.predict(_files(image_folder), reject=0.5, raw=True)  # raw probabilities shown, the same rejections
    assert [a.rejected for a in raw] == [a.rejected for a in answers]
    assert raw[0].probability == pytest.approx(softmax(logits)[0].max(), abs=1e-5)


def test_old_manifests_and_other_weights_keep_temperature_1(tiny_run, image_folder, tmp_path):
    model, logits = _with_confidence(tiny_run, image_folder)
    old = TrainedModel(model.model, {k: v for k, v in model.manifest.items() if k not in ("calibration", "rejection")})
    assert old.temperature == 1.0 and old.rejection is None
    np.testing.assert_allclose(old.predict_proba(_files(image_folder)), softmax(logits), atol=1e-5)
    assert model.with_weights(model.model.state_dict()).temperature == 1.0
    folder = transferkit.RunDir(tiny_run).write_model_folder(tmp_path / "averaged", model.model.state_dict())
    written = json.loads(folder.manifest_file.read_text())
    assert "calibration" not in written and "rejection" not in written and written["classes"] == model.classes
    assert transferkit.load(folder.path).temperature == 1.0


def test_predict_and_evaluate_commands_print_unknown_and_raw(tiny_run, image_folder, capsys):
    model, _ = _with_confidence(tiny_run, image_folder)
    folder = str(image_folder / "test")
    assert main(["predict", str(tiny_run), folder, "--reject", "0.5", "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    unknown = [line for line in lines if "\tunknown (closest: " in line]
    assert 3 <= len(unknown) <= 9 and len(lines) == 12
    assert main(["predict", str(tiny_run), folder]) == 0
    calibrated = capsys.readouterr().out
    assert "unknown" not in calibrated
    assert main(["predict", str(tiny_run), folder, "--raw"]) == 0
    assert capsys.readouterr().out != calibrated
    assert main(["evaluate", str(tiny_run), "--raw"]) == 0
    assert "(uncalibrated)" in capsys.readouterr().out and main(["evaluate", str(tiny_run)]) == 0
    assert "ECE" in capsys.readouterr().out
    assert main(["predict", str(tiny_run), folder, "--reject", "1.5"]) == 2
    assert "false-rejection rate in [0, 1)" in capsys.readouterr().err
    assert main(["predict", f"{tiny_run},{tiny_run}", folder, "--ensemble", "mean", "--reject", "0.05"]) == 2
    assert "ensemble" in capsys.readouterr().err


@needs_plugin_component("tta", "averaging/flip", "transferkit-averaging")
def test_reject_with_tta_is_refused(tiny_run, image_folder, capsys):
    _with_confidence(tiny_run, image_folder)
    assert main(["predict", str(tiny_run), str(image_folder / "test"), "--reject", "0.05", "--tta", "averaging/flip"]) == 2
    assert "--tta" in capsys.readouterr().err


def test_a_folder_is_its_image_files(tiny_run, image_folder):
    model = transferkit.load(tiny_run)
    folder = image_folder / "test" / "blue"
    files = sorted(str(f) for f in folder.glob("*.png"))
    assert np.allclose(model.predict_proba(folder), model.predict_proba(files))
    assert len(model.predict(str(folder))) == len(files)


def test_nhwc_and_nchw_batches_are_batches_of_images(tiny_run, image_folder):
    model = transferkit.load(tiny_run)
    files = sorted((image_folder / "test" / "green").glob("*.png"))
    arrays = [read_image(f) for f in files]
    one_by_one = model.predict_proba(arrays)
    nhwc = np.stack(arrays)
    assert np.allclose(model.predict_proba(nhwc), one_by_one, atol=1e-6)
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2).float() / 255.0
    assert np.allclose(model.predict_proba(nchw), one_by_one, atol=1e-3)


def test_top_k_below_one_and_normalised_batches_are_refused(tiny_run, image_folder):
    model = transferkit.load(tiny_run)
    image = read_image(next((image_folder / "test" / "red").glob("*.png")))
    with pytest.raises(UsageError, match="top_k 0: give 1 or more"):
        model.predict(image, top_k=0)
    normalised = (torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 - 0.5) / 0.25
    with pytest.raises(DataError, match="look normalised"):
        model.predict_proba(normalised[None])
