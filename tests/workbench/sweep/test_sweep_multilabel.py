"""transferkit sweep of a multi-label recipe (task = "multilabel"): trials ranked by the final
weights' validation macro mAP, said as mAP in the table, the CSV, the log and best_recipe.toml."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

import pytest

from transferkit.cli import main
from transferkit.evaluate_multilabel import evaluate_multilabel
from transferkit.testing import make_multilabel_recipe, registered_backbone, write_multilabel_csv, write_recipe
from transferkit.workbench.sweep.results import MACRO_MAP, TrialResult, read_results, tie_note
from transferkit.workbench.sweep.trials import plan_sweep


@pytest.fixture(scope="module")
def backbone() -> Iterator[str]:
    with registered_backbone() as name:
        yield name


def test_a_multilabel_sweep_ranks_on_validation_map(backbone: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A probe held to nearly nothing (phases.extract.C = 1e-8) against the usual one, each then
    fine-tuned for an epoch, the final weights chosen on validation mAP: the second trial ranks
    first, and the figure is the chosen weights' (not the last epoch's)."""
    recipe = make_multilabel_recipe(write_multilabel_csv(tmp_path / "data"), backbone, train={"final": "auto"},
                                    phases={"finetune": {"epochs": 1}})
    path = write_recipe(tmp_path / "ml.toml", recipe)
    out = tmp_path / "sweep"
    assert main(["sweep", str(path), "--grid", "phases.extract.C=1e-8,100", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "val mAP" in printed and "test mAP" in printed and "top-1" not in printed

    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["trial", "phases.extract.C", "val_macro_map", "test_macro_map", "seconds", "status", "reason"]
    assert [r["trial"] for r in rows] == ["trial-001", "trial-000"] and [r["status"] for r in rows] == ["ok", "ok"]
    vals = [float(r["val_macro_map"]) for r in rows]
    assert vals[0] > vals[1]
    for row in rows:
        trial = out / row["trial"]
        summary = json.loads((trial / "summary.json").read_text())
        final = summary["final"]
        assert float(row["val_macro_map"]) == pytest.approx(final["candidates"][final["chosen"]]["val_macro_map"])
        assert float(row["test_macro_map"]) == pytest.approx(summary["test"]["macro_map"])
        # the exported model on the validation split gives the figure the sweep ranked by
        assert float(row["val_macro_map"]) == pytest.approx(evaluate_multilabel(trial, split="val")["macro_map"], abs=1e-6)

    md = (out / "results.md").read_text()
    assert "| trial | phases.extract.C | val mAP | test mAP | seconds | status |" in md and "Sorted by validation macro mAP" in md
    first = (out / "best_recipe.toml").read_text().splitlines()[0]
    assert first == f"# The best trial of sweep sweep: trial-001, validation macro mAP {vals[0]:.4f}"
    assert any(line.startswith("best: trial-001 ") and f"val mAP {vals[0]:.4f}" in line for line in printed.splitlines())
    assert [r.val for r in read_results(out)] == pytest.approx(vals)  # results.json read back (for --resume)


@pytest.mark.parametrize("summary, epochs, figure", [
    ({"val": {"macro_map": 0.7}, "final": {"chosen": "probe", "candidates": {"probe": {"val_macro_map": 0.6}}}}, [0.5], 0.7),
    ({"test": {}, "final": {"chosen": "wise-0.5", "candidates": {"wise-0.5": {"val_macro_map": 0.6}}}}, [0.5], 0.6),
    ({"test": {}, "final": {"chosen": "probe", "alpha": 0.0}}, [0.4, 0.5], 0.5),  # the probe alone, or train.final = "last"
])
def test_the_figure_of_a_multilabel_run(tmp_path: Path, summary: dict, epochs: list, figure: float) -> None:
    """summary["val"] (no test split), else the chosen candidate, else the last epoch record."""
    records = [{"kind": "epoch", "val_macro_map": v} for v in epochs] + [{"kind": "test", "macro_map": 0.1}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert MACRO_MAP.final_val(tmp_path, summary) == figure


def test_a_multilabel_sweep_needs_validation_rows_when_val_fraction_is_0(backbone: str, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The check reads the CSV manifest (not the single-label data sources): no val rows is refused
    before any trial trains; val rows of its own are enough."""
    without = write_recipe(tmp_path / "ml.toml", make_multilabel_recipe(write_multilabel_csv(tmp_path / "a"), backbone))
    assert main(["sweep", str(without), "--set", "data.val_fraction=0", "--grid", "phases.extract.lr=0.01,0.02",
                 "--output", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert "data.val_fraction: 0" in err and "no rows with split val" in err and "validation mAP" in err and "\n" not in err
    assert not (tmp_path / "s").exists()
    with_val = write_multilabel_csv(tmp_path / "b", {"train": 12, "val": 3, "test": 3})
    plan = plan_sweep(make_multilabel_recipe(with_val, backbone, data={"val_fraction": 0.0}), grid={"phases.extract.lr": [0.01]})
    assert plan.metric is MACRO_MAP and len(plan.trials) == 1


def test_a_tie_is_said_in_map() -> None:
    results = [TrialResult("trial-000", {}, "ok", 0.9), TrialResult("trial-001", {}, "ok", 0.9)]
    assert "2 trials share the best val mAP 0.9000" in tie_note(results, MACRO_MAP)
