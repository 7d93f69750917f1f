"""``transferkit export`` of a multi-label run (issue 26): the graph returns each label's sigmoid
probability (output ``probabilities``), which matches ``predict_proba`` on real images; the JSON
beside it records the task, the activation and the thresholds; the verification compares
probabilities with probabilities (an export that returned logits would fail it)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

import transferkit
from transferkit.cli import main
from transferkit.data.preprocessing import preprocessing_from_manifest
from transferkit.data.sources import read_image
from transferkit.errors import TransferkitError
from transferkit.workbench.export import backends
from transferkit.workbench.export.verified_file import TOLERANCE, export_run

from ...multilabel_runs import LABELS, image_files, labelled_images, multilabel_run  # noqa: F401 (fixtures)

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


def _inputs(run, files) -> torch.Tensor:
    """The files through the run's evaluation preprocessing: what the exported graph takes."""
    transform = preprocessing_from_manifest(json.loads((run / "manifest.json").read_text()))
    return torch.stack([transform(read_image(f)) for f in files])


def _check_sidecar(record: dict, run) -> None:
    model = transferkit.load(run)
    assert record["task"] == "multilabel" and record["classes"] == LABELS
    assert record["output"]["name"] == "probabilities" and record["output"]["activation"] == "sigmoid"
    assert record["output"]["shape"] == ["batch", len(LABELS)] and "not a softmax" in record["output"]["meaning"]
    assert record["thresholds"] == {"rule": "f1", "values": model.thresholds.tolist()}
    assert "calibration" not in record and "rejection" not in record
    check = record["verification"]
    assert check["label_set_agreement"] == 1.0 and "top1_agreement" not in check and check["real_images"] == 3


@pytest.mark.filterwarnings("ignore:.*torch.jit")
def test_torchscript_returns_the_sigmoid_probabilities_predict_gives(multilabel_run, labelled_images, capsys):
    assert main(["export", str(multilabel_run), "--format", "torchscript"]) == 0
    assert "-> probabilities [batch, 4]" in capsys.readouterr().out
    module = torch.jit.load(str(multilabel_run / "model.torchscript.pt"))
    files = image_files(labelled_images)
    with torch.no_grad():
        got = module(_inputs(multilabel_run, files)).numpy()
    expected = transferkit.load(multilabel_run).predict_proba(files)
    assert np.abs(got - expected).max() < TOLERANCE and np.abs(got.sum(axis=1) - 1).max() > 0.1
    _check_sidecar(json.loads((multilabel_run / "model.torchscript.pt.json").read_text()), multilabel_run)


@pytest.mark.skipif(not HAS_ONNX, reason="needs transferkit[export] (onnx, onnxscript, onnxruntime)")
def test_onnx_returns_the_sigmoid_probabilities_predict_gives(multilabel_run, labelled_images, tmp_path):
    import onnxruntime as ort

    result = export_run(multilabel_run, "onnx", output=tmp_path / "m.onnx")
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    files = image_files(labelled_images)
    got = session.run(["probabilities"], {"images": _inputs(multilabel_run, files).numpy()})[0]
    expected = transferkit.load(multilabel_run).predict_proba(files)
    assert np.abs(got - expected).max() < TOLERANCE
    _check_sidecar(json.loads(result.manifest_path.read_text()), multilabel_run)
    thresholds = np.asarray(result.manifest["thresholds"]["values"])
    answers = transferkit.load(multilabel_run).predict(files)
    assert [[LABELS[i] for i in np.flatnonzero(row >= thresholds)] for row in got] == [sorted(a.labels, key=LABELS.index)
                                                                                     for a in answers]


def test_the_verification_compares_probabilities_with_probabilities(multilabel_run, tmp_path, monkeypatch):
    real_runner = backends.torchscript_runner

    def logits_instead(data: bytes):  # an export that forgot the sigmoid
        run, what = real_runner(data)
        return (lambda images: np.log(run(images) / (1 - run(images)))), what

    monkeypatch.setattr(backends, "torchscript_runner", logits_instead)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TransferkitError, match=r"differs from PyTorch by .* \(max abs sigmoid probability difference;"):
        export_run(multilabel_run, "torchscript", output=out / "m.pt")
    assert list(out.iterdir()) == []
