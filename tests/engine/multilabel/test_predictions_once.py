"""A multi-label run predicts each candidate on each split once: the final figures reuse the test
probabilities a phase's line computed, and the choice reuses the last epoch's validation ones."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest

import transferkit
from transferkit.engine.multilabel import phases
from transferkit.testing import make_multilabel_recipe, registered_backbone, write_multilabel_csv


@pytest.fixture(scope="module")
def backbone() -> Iterator[str]:
    with registered_backbone() as name:
        yield name


def _passes(backbone: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **sections: Any) -> tuple[Counter, dict]:
    """The run's passes over images (not cached features), by their progress label; its summary."""
    seen: Counter = Counter()
    original = phases.predict

    def predict(model: Any, images: Any, preprocess: Any, **kwargs: Any) -> Any:
        if kwargs.get("features") is None:
            seen[kwargs["desc"]] += 1
        return original(model, images, preprocess, **kwargs)

    monkeypatch.setattr(phases, "predict", predict)
    csv = write_multilabel_csv(tmp_path / "data")
    result = transferkit.finetune(make_multilabel_recipe(csv, backbone, **sections), output=tmp_path / "run", quiet=True)
    return seen, result.summary


def test_each_candidate_is_predicted_once_per_split(backbone: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen, summary = _passes(backbone, tmp_path, monkeypatch, train={"final": "auto"}, phases={"finetune": {"epochs": 2}})
    assert seen["test"] == 2  # the probe's line and the fine-tuned model's; the final figures reuse one of them
    assert "test (final)" not in seen
    assert seen["val"] == 2 and "val (finetuned)" not in seen  # one pass per epoch; the last is the candidate's
    assert all(seen[f"val (wise-{a})"] == 1 for a in ("0.25", "0.5", "0.75"))
    assert summary["test"]["macro_map"] > 0.5 and summary["final"]["chosen"] in summary["final"]["candidates"]


def test_with_an_averager_the_averaged_weights_are_predicted_on_validation(backbone: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen, _ = _passes(backbone, tmp_path, monkeypatch, train={"final": "auto"}, phases={"finetune": {"epochs": 2}},
                      averaging={"name": "averaging/ema", "decay": 0.9})
    assert seen["val (finetuned)"] == 1  # the live model's last epoch is not the averaged candidate
    assert seen["test"] == 3  # the probe, the live fine-tuned model and the averaged one
