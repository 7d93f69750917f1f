"""The results of a sweep: each trial's validation figure (of the model its run exported), and the
table sorted best first, written as results.json / results.csv / results.md after every trial.

The figure is the recipe's task's (``Metric``): top-1 accuracy for a single-label recipe, macro mean
average precision for a multi-label one (``task = "multilabel"``). It names the results' columns
(``val_top1`` / ``val_macro_map``) and is said in the table, the log and ``best_recipe.toml``."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ...engine.rundir.artifacts import atomic_write, encode_text
from ...engine.rundir.run_dir import RunDir
from ...errors import DataError
from ...evaluate_multilabel import evaluate_multilabel
from ...evaluate_run import evaluate
from ...recipe_tasks import MULTILABEL, SINGLE
from .space import format_value

RESULTS_JSON, RESULTS_CSV, RESULTS_MD = "results.json", "results.csv", "results.md"


@dataclass
class TrialResult:
    """One finished trial: ``status`` is ``"ok"`` or ``"failed"`` (with a one-line ``reason``);
    ``val`` and ``test``: the final model's figures of the sweep's ``Metric``."""

    trial: str
    params: dict[str, Any]
    status: str
    val: float | None = None
    test: float | None = None
    seconds: float = 0.0
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, metric: "Metric") -> dict[str, Any]:
        """The results.json record: the figures under the metric's names (``val_top1``, ...)."""
        return {"trial": self.trial, "params": self.params, "status": self.status, f"val_{metric.key}": self.val,
                f"test_{metric.key}": self.test, "seconds": self.seconds, "reason": self.reason, "extra": self.extra}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> "TrialResult":
        key = next((m.key for m in METRICS.values() if f"val_{m.key}" in record), TOP1.key)
        return cls(record["trial"], record["params"], record["status"], record.get(f"val_{key}"), record.get(f"test_{key}"),
                   record.get("seconds", 0.0), record.get("reason", ""), record.get("extra", {}))


def final_val_top1(run_dir: Path, summary: dict[str, Any]) -> float | None:
    """Validation top-1 of the model the run exported (its final weights, averaged when the recipe
    averages). The engine stores it as ``summary["val"]`` when there is no test split; otherwise
    the last epoch record's ``val_top1`` is the final weights' accuracy, unless an averager
    replaced them, in which case the exported model is evaluated on the validation split here."""
    if summary.get("val"):
        return float(summary["val"]["top1"])
    if summary.get("averager"):
        return _evaluate_exported_on_val(run_dir)
    epochs = [r for r in RunDir(run_dir).read_metrics() if r.get("kind") == "epoch"]
    if epochs and epochs[-1].get("val_top1") is not None:
        return float(epochs[-1]["val_top1"])
    return None


def _evaluate_exported_on_val(run_dir: Path) -> float | None:
    try:
        return float(evaluate(run_dir, split="val")["top1"])
    except DataError:  # the run's data has no validation split
        return None


def final_val_macro_map(run_dir: Path, summary: dict[str, Any]) -> float | None:
    """Validation macro mAP of the weights a multi-label run exported: ``summary["val"]`` when it
    has no test split; else the chosen candidate's (``summary["final"]``, when the run chose among
    the probe, WiSE-FT and the fine-tuned model), else the last epoch record's (the probe alone, or
    ``train.final = "last"``); failing those, the exported model evaluated on the val split here."""
    if summary.get("val"):
        return float(summary["val"]["macro_map"])
    final = summary.get("final") or {}
    chosen = (final.get("candidates") or {}).get(final.get("chosen")) or {}
    if chosen.get("val_macro_map") is not None:
        return float(chosen["val_macro_map"])
    epochs = [r for r in RunDir(run_dir).read_metrics() if r.get("kind") == "epoch"]
    if epochs and epochs[-1].get("val_macro_map") is not None:
        return float(epochs[-1]["val_macro_map"])
    try:
        return float(evaluate_multilabel(run_dir, split="val")["macro_map"])
    except DataError:  # the run's data has no validation split
        return None


@dataclass(frozen=True)
class Metric:
    """What a sweep ranks its trials by: ``key`` names the figure in ``summary["test"]`` and the
    results' columns (``val_<key>``, ``test_<key>``); ``label`` heads the table and the log lines
    (``val top-1``); ``words`` says it in sentences; ``final_val`` reads a finished run's."""

    key: str
    label: str
    words: str
    noun: str  # "accuracy": what a trial without a validation split lacks
    final_val: Callable[[Path, dict[str, Any]], float | None]


TOP1 = Metric("top1", "top-1", "validation top-1", "accuracy", final_val_top1)
MACRO_MAP = Metric("macro_map", "mAP", "validation macro mAP", "mAP", final_val_macro_map)
METRICS = {SINGLE: TOP1, MULTILABEL: MACRO_MAP}


def metric_for(task: str | None) -> Metric:
    """The figure a sweep of recipes of this ``task`` ranks by (``None``: a single-label recipe)."""
    return METRICS.get(task or SINGLE, TOP1)


def trial_from_run(trial: str, params: dict[str, Any], run_dir: Path, seconds: float, metric: Metric = TOP1) -> TrialResult:
    """A finished run directory as a result row (reads summary.json and metrics.jsonl)."""
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    val = metric.final_val(Path(run_dir), summary)
    test = summary.get("test")
    figure = test.get(metric.key) if test else None
    if val is None:
        return TrialResult(trial, params, "failed", None, figure, seconds,
                           f"the run has no validation {metric.noun} (no validation split)")
    return TrialResult(trial, params, "ok", val, figure, seconds)


def ranked(results: Sequence[TrialResult]) -> list[TrialResult]:
    """Best validation figure first; failed trials (and any without a figure) last, by name."""
    return sorted(results, key=lambda r: (r.status != "ok" or r.val is None, -(r.val or 0.0), r.trial))


def best(results: Sequence[TrialResult]) -> TrialResult | None:
    top = ranked(results)
    return top[0] if top and top[0].status == "ok" and top[0].val is not None else None


def tie_note(results: Sequence[TrialResult], metric: Metric = TOP1) -> str | None:
    """One line when trials share the best validation figure: which ones, and that the first
    in trial order is taken (the figure cannot tell them apart); None without a tie."""
    top = best(results)
    if top is None:
        return None
    tied = sorted(r.trial for r in results if r.status == "ok" and r.val == top.val)
    if len(tied) < 2:
        return None
    return (f"tie: {len(tied)} trials share the best val {metric.label} {top.val:.4f} ({', '.join(tied)}); {top.trial}, the"
            " first in trial order, is taken: validation cannot tell them apart (a larger validation split, or"
            " transferkit compare on their runs, can)")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def table_rows(results: Sequence[TrialResult], keys: Sequence[str], metric: Metric = TOP1) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the results table, best first."""
    header = ["trial", *keys, f"val {metric.label}", f"test {metric.label}", "seconds", "status"]
    rows = []
    for r in ranked(results):
        status = r.status if r.status == "ok" else f"{r.status}: {r.reason}"
        rows.append([r.trial, *(format_value(r.params.get(k)) for k in keys), _figure(r.val), _figure(r.test),
                     f"{r.seconds:.1f}", status])
    return header, rows


def format_table(results: Sequence[TrialResult], keys: Sequence[str], metric: Metric = TOP1) -> str:
    """The table as aligned text for the terminal."""
    header, rows = table_rows(results, keys, metric)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    widths[-1] = 0
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _markdown(results: Sequence[TrialResult], keys: Sequence[str], title: str, metric: Metric) -> str:
    header, rows = table_rows(results, keys, metric)

    def cells(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|").replace("\n", " ") for v in values) + " |"

    lines = [f"# {title}", "", f"Sorted by {metric.words} (the final model of each trial), best first.", ""]
    lines += [cells(header), "|" + "---|" * len(header)] + [cells(row) for row in rows]
    return "\n".join(lines) + "\n"


def _csv(results: Sequence[TrialResult], keys: Sequence[str], metric: Metric) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", *keys, f"val_{metric.key}", f"test_{metric.key}", "seconds", "status", "reason"])
    for r in ranked(results):
        writer.writerow([r.trial, *(_exact(r.params.get(k)) for k in keys), "" if r.val is None else r.val,
                         "" if r.test is None else r.test, round(r.seconds, 2), r.status, r.reason])
    return buffer.getvalue()


def _exact(value: Any) -> str:
    """A swept value in full (the CSV is for machines): TOML-like booleans, JSON lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def write_results(folder: Path, results: Sequence[TrialResult], keys: Sequence[str], title: str, metric: Metric = TOP1) -> None:
    """results.json (read back by ``--resume``), results.csv and results.md, each atomically."""
    data = json.dumps([r.to_json(metric) for r in ranked(results)], indent=2) + "\n"
    for name, text in ((RESULTS_JSON, data), (RESULTS_CSV, _csv(results, keys, metric)),
                       (RESULTS_MD, _markdown(results, keys, title, metric))):
        atomic_write(folder / name, lambda fh, text=text: fh.write(encode_text(text)))


def read_results(folder: Path) -> list[TrialResult]:
    path = Path(folder) / RESULTS_JSON
    if not path.is_file():
        return []
    return [TrialResult.from_json(record) for record in json.loads(path.read_text())]
