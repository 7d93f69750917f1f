"""``transferkit.load`` of a multi-label run (issue 26): ``predict_proba`` gives each label's sigmoid,
``predict`` the labels that reach their thresholds (sorted by probability) and the top-k labels
whatever their thresholds; ``reject`` refused; test-time views average sigmoids; an ensemble
averages probabilities and thresholds, and does not mix single- and multi-label runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import transferkit
from transferkit.errors import DataError
from transferkit.label_sets import LabelSetPrediction

from .conftest import needs_plugin_component
from .multilabel_runs import (  # noqa: F401 (fixtures)
    LABELS,
    edit_manifest,
    image_files,
    labelled_images,
    multilabel_run,
    write_multilabel_run,
)


def _logits(model, files) -> np.ndarray:
    return model.predictions(transferkit.ArrayImages(files, [0] * len(files), model.classes)).logits


def test_probabilities_are_sigmoids_of_the_logits_not_a_softmax(multilabel_run, labelled_images):
    model = transferkit.load(multilabel_run)
    assert model.task == "multilabel" and model.classes == LABELS and model.temperature == 1.0 and model.rejection is None
    files = image_files(labelled_images)
    probs = model.predict_proba(files)
    logits = _logits(model, files)
    assert probs.shape == (12, len(LABELS))
    np.testing.assert_allclose(probs, torch.sigmoid(torch.from_numpy(logits)).numpy(), atol=1e-6)
    assert np.abs(probs.sum(axis=1) - 1).max() > 0.1
    assert not np.allclose(probs, torch.from_numpy(logits).softmax(-1).numpy(), atol=1e-2)
    np.testing.assert_array_equal(model.predict_proba(files, raw=True), probs)  # no temperature to leave out


def test_predict_answers_exactly_the_labels_that_reach_their_thresholds(multilabel_run, labelled_images):
    model = transferkit.load(multilabel_run)
    files = image_files(labelled_images)
    probs = model.predict_proba(files)
    answers = model.predict(files)
    sizes = set()
    for answer, row in zip(answers, probs):
        assert isinstance(answer, LabelSetPrediction) and isinstance(answer, transferkit.LabelSetPrediction)
        expected = {name for name, p, t in zip(LABELS, row, model.thresholds) if p >= t}
        assert set(answer.labels) == expected and list(answer.probabilities) == answer.labels
        assert [answer.probabilities[name] for name in answer.labels] == sorted(answer.probabilities.values(), reverse=True)
        assert answer.scores == pytest.approx(dict(zip(LABELS, row.tolist())), abs=1e-6)
        sizes.add(len(answer.labels))
    assert len(sizes) >= 2 and max(sizes) >= 2  # the run's images get sets of several sizes


def test_top_k_lists_the_most_probable_labels_whatever_their_thresholds(multilabel_run, labelled_images):
    model = transferkit.load(multilabel_run)
    files = image_files(labelled_images)
    probs = model.predict_proba(files)
    for k in (1, 3, 10):
        for answer, row in zip(model.predict(files, top_k=k), probs):
            order = np.argsort(-row, kind="stable")[: min(k, len(LABELS))]
            assert [name for name, _ in answer.top_k] == [LABELS[i] for i in order]
            assert [p for _, p in answer.top_k] == pytest.approx(row[order].tolist(), abs=1e-6)
    write_multilabel_run(multilabel_run, labelled_images, thresholds=[1.0] * len(LABELS))  # no label can pass
    nothing = transferkit.load(multilabel_run).predict(files[:2], top_k=2)
    assert all(a.labels == [] and a.probabilities == {} and len(a.top_k) == 2 for a in nothing)


def test_reject_is_refused_in_one_line(multilabel_run, labelled_images):
    model = transferkit.load(multilabel_run)
    with pytest.raises(DataError, match=r"--reject: .* is a multi-label run: each label has its own threshold") as caught:
        model.predict(image_files(labelled_images)[:1], reject=0.05)
    assert str(multilabel_run) in str(caught.value) and "\n" not in str(caught.value)


@needs_plugin_component("tta", "averaging/flip", "transferkit-averaging")
def test_test_time_views_average_the_sigmoids(multilabel_run, labelled_images):
    model = transferkit.load(multilabel_run)
    files = image_files(labelled_images)[:4]
    views = [model.predictions(transferkit.ArrayImages([f], [0], LABELS)) for f in files]
    flipped = model.predict_proba([np.ascontiguousarray(transferkit.read_image(f)[:, ::-1]) for f in files])
    expected = (np.concatenate([v.probs for v in views]) + flipped) / 2
    np.testing.assert_allclose(model.predict_proba(files, tta="averaging/flip"), expected, atol=1e-5)
    with_tta = model.predict(files, tta="averaging/flip")
    assert all(set(a.labels) == {n for n, p, t in zip(LABELS, row, model.thresholds) if p >= t}
               for a, row in zip(with_tta, expected))


def test_an_ensemble_averages_probabilities_and_thresholds(multilabel_run, labelled_images, tmp_path):
    other = write_multilabel_run(tmp_path / "other", labelled_images, seed=1)
    files = image_files(labelled_images)
    a, b = transferkit.load(multilabel_run), transferkit.load(other)
    ensemble = transferkit.load_ensemble([multilabel_run, other])
    assert ensemble.task == "multilabel"
    np.testing.assert_allclose(ensemble.thresholds, (a.thresholds + b.thresholds) / 2)
    probs = ensemble.predict_proba(files)
    np.testing.assert_allclose(probs, (a.predict_proba(files) + b.predict_proba(files)) / 2, atol=1e-6)
    for answer, row in zip(ensemble.predict(files), probs):
        assert set(answer.labels) == {n for n, p, t in zip(LABELS, row, ensemble.thresholds) if p >= t}
    with pytest.raises(DataError, match="--reject: .* is a multi-label run"):
        ensemble.predict(files[:1], reject="auto")


def test_single_and_multilabel_runs_do_not_mix_in_an_ensemble(multilabel_run, tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    for name in ("model.safetensors", "recipe.toml", "checksums.json"):
        (single / name).write_bytes((multilabel_run / name).read_bytes())
    (single / "manifest.json").write_bytes((multilabel_run / "manifest.json").read_bytes())
    edit_manifest(single, task=None, thresholds=None)
    assert transferkit.load(single).task == "single"
    for runs in ([multilabel_run, single], [single, multilabel_run]):
        with pytest.raises(DataError, match=f"ensemble: {multilabel_run} is a multi-label run and {single} a single-label one;"
                                            " ensemble runs of one kind only"):
            transferkit.load_ensemble(runs)
