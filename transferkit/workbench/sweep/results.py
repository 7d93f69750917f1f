"""The results of a sweep: each trial's validation accuracy (of the model its run exported), and the
table sorted best first, written as results.json / results.csv / results.md after every trial."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ...engine.rundir.artifacts import atomic_write, encode_text
from ...engine.rundir.run_dir import RunDir
from ...errors import DataError
from ...evaluate_run import evaluate
from .space import format_value

RESULTS_JSON, RESULTS_CSV, RESULTS_MD = "results.json", "results.csv", "results.md"


@dataclass
class TrialResult:
    """One finished trial: ``status`` is ``"ok"`` or ``"failed"`` (with a one-line ``reason``)."""

    trial: str
    params: dict[str, Any]
    status: str
    val_top1: float | None = None
    test_top1: float | None = None
    seconds: float = 0.0
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


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


def trial_from_run(trial: str, params: dict[str, Any], run_dir: Path, seconds: float) -> TrialResult:
    """A finished run directory as a result row (reads summary.json and metrics.jsonl)."""
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    val = final_val_top1(Path(run_dir), summary)
    test = summary.get("test")
    if val is None:
        return TrialResult(trial, params, "failed", None, test["top1"] if test else None, seconds,
                           "the run has no validation accuracy (no validation split)")
    return TrialResult(trial, params, "ok", val, test["top1"] if test else None, seconds)


def ranked(results: Sequence[TrialResult]) -> list[TrialResult]:
    """Best validation accuracy first; failed trials (and any without a figure) last, by name."""
    return sorted(results, key=lambda r: (r.status != "ok" or r.val_top1 is None, -(r.val_top1 or 0.0), r.trial))


def best(results: Sequence[TrialResult]) -> TrialResult | None:
    top = ranked(results)
    return top[0] if top and top[0].status == "ok" and top[0].val_top1 is not None else None


def tie_note(results: Sequence[TrialResult]) -> str | None:
    """One line when trials share the best validation accuracy: which ones, and that the first
    in trial order is taken (the accuracy cannot tell them apart); None without a tie."""
    top = best(results)
    if top is None:
        return None
    tied = sorted(r.trial for r in results if r.status == "ok" and r.val_top1 == top.val_top1)
    if len(tied) < 2:
        return None
    return (f"tie: {len(tied)} trials share the best val top-1 {top.val_top1:.4f} ({', '.join(tied)}); {top.trial}, the"
            " first in trial order, is taken: validation cannot tell them apart (a larger validation split, or"
            " transferkit compare on their runs, can)")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def table_rows(results: Sequence[TrialResult], keys: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the results table, best first."""
    header = ["trial", *keys, "val top-1", "test top-1", "seconds", "status"]
    rows = []
    for r in ranked(results):
        status = r.status if r.status == "ok" else f"{r.status}: {r.reason}"
        rows.append([r.trial, *(format_value(r.params.get(k)) for k in keys), _figure(r.val_top1), _figure(r.test_top1),
                     f"{r.seconds:.1f}", status])
    return header, rows


def format_table(results: Sequence[TrialResult], keys: Sequence[str]) -> str:
    """The table as aligned text for the terminal."""
    header, rows = table_rows(results, keys)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    widths[-1] = 0
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _markdown(results: Sequence[TrialResult], keys: Sequence[str], title: str) -> str:
    header, rows = table_rows(results, keys)

    def cells(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|").replace("\n", " ") for v in values) + " |"

    lines = [f"# {title}", "", "Sorted by validation top-1 (the final model of each trial), best first.", ""]
    lines += [cells(header), "|" + "---|" * len(header)] + [cells(row) for row in rows]
    return "\n".join(lines) + "\n"


def _csv(results: Sequence[TrialResult], keys: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", *keys, "val_top1", "test_top1", "seconds", "status", "reason"])
    for r in ranked(results):
        writer.writerow([r.trial, *(_exact(r.params.get(k)) for k in keys), "" if r.val_top1 is None else r.val_top1,
                         "" if r.test_top1 is None else r.test_top1, round(r.seconds, 2), r.status, r.reason])
    return buffer.getvalue()


def _exact(value: Any) -> str:
    """A swept value in full (the CSV is for machines): TOML-like booleans, JSON lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def write_results(folder: Path, results: Sequence[TrialResult], keys: Sequence[str], title: str) -> None:
    """results.json (read back by ``--resume``), results.csv and results.md, each atomically."""
    data = json.dumps([asdict(r) for r in ranked(results)], indent=2) + "\n"
    for name, text in ((RESULTS_JSON, data), (RESULTS_CSV, _csv(results, keys)), (RESULTS_MD, _markdown(results, keys, title))):
        atomic_write(folder / name, lambda fh, text=text: fh.write(encode_text(text)))


def read_results(folder: Path) -> list[TrialResult]:
    path = Path(folder) / RESULTS_JSON
    if not path.is_file():
        return []
    return [TrialResult(**record) for record in json.loads(path.read_text())]
