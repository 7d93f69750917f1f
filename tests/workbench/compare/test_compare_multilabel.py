"""``transferkit compare`` of two multi-label runs: macro mAP on RUN_A's images, the paired
bootstrap interval of the difference, per-label differences; a single-label run is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

import transferkit
from transferkit.cli import main
from transferkit.engine.evaluation.multilabel_metrics import mean_average_precision
from transferkit.engine.rundir.model_files import read_manifest, read_weights, write_manifest, write_weights
from transferkit.testing import make_multilabel_recipe, make_recipe, registered_backbone, write_image_folder, write_multilabel_csv
from transferkit.workbench.compare.multilabel import macro_map_weighted, paired_bootstrap
from transferkit.workbench.compare.paired import compare_runs


@pytest.fixture(scope="module")
def backbone() -> Iterator[str]:
    with registered_backbone() as name:
        yield name


@pytest.fixture(scope="module")
def trained(backbone: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One multi-label run, shared by the tests that compare it (they compare copies they change)."""
    root = tmp_path_factory.mktemp("multilabel-compare")
    recipe = make_multilabel_recipe(write_multilabel_csv(root / "data"), backbone, phases={"finetune": {"epochs": 1}})
    return transferkit.finetune(recipe, output=root / "run", quiet=True).run_dir


def _rewritten(run: Path, to: Path, head: Callable[[dict], Any], labels: Callable[[dict], Any]) -> Path:
    """A copy of ``run`` whose head and label order are changed (weights and manifest rewritten
    with their checksums, as transferkit writes them)."""
    copy = Path(shutil.copytree(run, to))
    state = read_weights(copy / "model.safetensors")
    head(state)
    write_weights(state, copy)
    manifest = read_manifest(copy)
    labels(manifest)
    write_manifest(manifest, copy)
    return copy


def test_a_run_compared_with_itself_differs_by_nothing(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    comparison = compare_runs(trained, trained)
    assert np.all(comparison.diffs == 0) and len(comparison.diffs) == 1000
    assert comparison.interval == (0.0, 0.0)
    summary = json.loads((trained / "summary.json").read_text())
    assert comparison.scores_a["macro"] == pytest.approx(summary["test"]["macro_map"], abs=1e-6)  # the figure the run wrote
    assert main(["compare", str(trained), str(trained)]) == 0
    out = capsys.readouterr().out
    assert f"macro mAP  A {summary['test']['macro_map']:.4f}   B {summary['test']['macro_map']:.4f}   B - A +0.0000" in out
    assert "95% bootstrap interval of the macro mAP difference B - A: +0.0000 to +0.0000 (1000 resamples of the 12 images" in out
    assert "no significant difference at the 0.05 level" in out and "(0 of 3 labels differ)" in out


def test_the_labels_are_matched_by_name_not_by_position(trained: Path, tmp_path: Path) -> None:
    """The same model with its labels (and head rows) in reverse order is the same model."""
    def reverse_head(state: dict) -> None:
        for key in ("head.weight", "head.bias"):
            state[key] = state[key].flip(0)

    def reverse_labels(manifest: dict) -> None:
        manifest["classes"] = manifest["classes"][::-1]
        manifest["thresholds"]["values"] = manifest["thresholds"]["values"][::-1]

    reversed_run = _rewritten(trained, tmp_path / "reversed", reverse_head, reverse_labels)
    comparison = compare_runs(trained, reversed_run)
    assert np.allclose(comparison.probs_a, comparison.probs_b, atol=1e-6) and np.allclose(comparison.diffs, 0.0, atol=1e-9)


def test_a_worse_run_is_told_apart(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A head that scores every image alike: each label's AP falls to its share of positives."""
    def blank(state: dict) -> None:
        state["head.weight"].zero_()
        state["head.bias"].zero_()

    blind = _rewritten(trained, tmp_path / "blind", blank, lambda manifest: None)
    comparison = compare_runs(trained, blind)
    prevalence = comparison.targets.mean(axis=0)
    assert comparison.scores_b["per_label"] == pytest.approx(prevalence)
    low, high = comparison.interval
    assert low <= np.median(comparison.diffs) <= high < 0
    assert main(["compare", str(trained), str(blind), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "a real difference at the 0.05 level" in out and "(3 of 3 labels differ)" in out
    assert "... and 1 more labels (--top N shows more)" in out


def test_a_multilabel_and_a_single_label_run_are_refused(trained: Path, backbone: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    recipe = make_recipe(write_image_folder(tmp_path / "images"), backbone, phases={"finetune": {"epochs": 0}})
    single = transferkit.finetune(recipe, output=tmp_path / "single", quiet=True).run_dir
    for a, b in ((trained, single), (single, trained)):
        assert main(["compare", str(a), str(b)]) == 1
        err = capsys.readouterr().err.strip()
        assert f"{trained} is a multi-label run and {single} a single-label one" in err and "\n" not in err


def test_the_bootstrap_scores_each_draw_as_those_images_repeated() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((40, 4)) < 0.3).astype(np.uint8)
    targets[:, 3] = 0  # a label without positives: left out, as the macro mean leaves it out
    probs = np.round(rng.random((40, 4)), 1)  # ties
    counts = rng.multinomial(40, np.full(40, 1 / 40), size=5)
    for row, score in zip(counts, macro_map_weighted(probs, targets, counts.astype(float))):
        repeated = np.repeat(np.arange(40), row)
        assert score == pytest.approx(mean_average_precision(probs[repeated], targets[repeated])["macro"])
    other = np.round(rng.random((40, 4)), 1)
    diffs = paired_bootstrap(probs, other, targets, resamples=250, seed=3)
    assert len(diffs) == 250 and np.array_equal(diffs, paired_bootstrap(probs, other, targets, 250, 3))  # seeded
