"""A run predicts each split once per set of weights: the choice of the final weights, their test
figures, calibration, rejection and the summary read the same predictions (``prediction_cache``)."""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from typing import Any

import numpy as np
import pytest

import transferkit
from transferkit.engine import run  # noqa: F401 (run: every module that predicts, imported before the patch)
from transferkit.engine.evaluation import predict
from transferkit.engine.evaluation.predict import Predictions
from transferkit.engine.evaluation.prediction_cache import PredictionCache
from transferkit.engine.final.choice import FINETUNED, PROBE
from transferkit.engine.training.trainer import Trainer

from .confidence_testdata import unknown_folder


def _fingerprint(model: Any) -> str:
    digest = hashlib.sha1()
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():  # counters (BatchNorm's num_batches_tracked) change no output
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture
def predictions_made(monkeypatch):
    """Every ``predict`` of a run: (weights, preprocessing, split), and whether the run's phases
    had ended (the first trainer's ``fit`` returned; cross-fitting's fold trainers come after)."""
    calls: list[dict[str, Any]] = []
    state: dict[str, Any] = {"trainer": None, "ended": False}
    original = predict.predict

    def counting(model, images, preprocess=None, **options):
        prepared = state["trainer"].prepared
        splits = prepared.splits
        split = {id(splits.val): "val", id(splits.test): "test", id(prepared.unknown): "unknown"}.get(id(images), "other")
        how = "features" if options.get("features") is not None else "probe" if preprocess is prepared.probe_preprocessing else "eval"
        calls.append({"weights": _fingerprint(model), "how": how, "split": split, "ended": state["ended"]})
        return original(model, images, preprocess, **options)

    # where it was imported (the module's own name left alone: a module imported later would take the patch for good)
    for module in [m for name, m in sys.modules.items() if name.startswith("transferkit.") and m is not predict]:
        if getattr(module, "predict", None) is original:
            monkeypatch.setattr(module, "predict", counting)
    fit = Trainer.fit

    def fit_and_mark(self, *args, **kwargs):
        first = state["trainer"] is None
        state["trainer"] = self if first else state["trainer"]
        summary = fit(self, *args, **kwargs)
        state["ended"] = state["ended"] or first
        return summary

    monkeypatch.setattr(Trainer, "fit", fit_and_mark)
    return calls


@pytest.mark.parametrize("folds", [1, 3])
def test_each_split_is_predicted_once_per_set_of_weights(tiny_recipe, tmp_path, predictions_made, folds):
    tiny_recipe["data"]["unknown"] = str(unknown_folder(tmp_path / "unknown"))
    tiny_recipe["train"].update(final="auto", folds=folds, test_candidates=True, calibrate="always")
    summary = transferkit.finetune(tiny_recipe, output=tmp_path / "run", quiet=True).summary
    full = [(c["weights"], c["how"], c["split"]) for c in predictions_made if c["how"] != "features"]
    assert [key for key, n in Counter(full).items() if n > 1] == []  # over the whole run, the phases' own included
    end = Counter(c["split"] for c in predictions_made if c["ended"] and c["split"] != "other")
    # validation: the probe and three interpolations (the fine-tuned model's is its last epoch's);
    # test: the interpolations or fold models the phases did not end with; the unknown images once
    if folds == 1:
        assert end == {"val": 4, "test": 3, "unknown": 1}
    else:  # fold 1 is the run's own split: its candidates on val; test: the soup, folds 1-2 and two soup interpolations
        assert end == {"val": 4, "test": 5, "unknown": 1}
    assert summary["calibration"]["test"]["n"] == 12 and summary["rejection"]["unknown"]["n"] == 8


def test_the_cache_computes_a_named_entry_once_and_an_unnamed_one_each_time():
    cache, made = PredictionCache(), []

    def compute() -> Predictions:
        made.append(1)
        return Predictions(np.zeros((0, 2)), np.zeros(0), ["a", "b"])

    first = cache.get(PROBE, "val", compute)
    assert cache.get(PROBE, "val", compute) is first and len(made) == 1
    cache.get(PROBE, "test", compute), cache.get(None, "test", compute), cache.get(None, "test", compute)
    assert len(made) == 4
    cache.put(FINETUNED, "val", first)
    cache.keep_only([FINETUNED])
    assert list(cache.entries) == [(FINETUNED, "val")]
