"""``transferkit runs [DIR]``: the run directories under DIR (default ``runs/``), one line each,
with their figures, read from the files each run wrote (``summary.json``, ``metrics.jsonl``,
``recipe.toml``); nothing is loaded or imported beyond that, so it is quick on many runs.

A run directory is a folder with ``recipe.toml`` and ``metrics.jsonl`` (model folders made from a
run, LR-cycle snapshots and lr-find folders are not runs of their own).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...engine.rundir.artifacts import Checksums
from ...errors import TransferkitError, UsageError
from ...recipe import PHASES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HEADER = ("run", "status", "backbone", "classes", "val acc", "test acc", "final", "epochs", "time", "when")


@dataclass
class RunRow:
    """One run's line."""

    path: Path
    status: str
    backbone: str
    classes: str
    val: str
    test: str
    final: str
    epochs: str
    seconds: str
    when: str

    def cells(self, base: Path) -> tuple[str, ...]:
        try:
            shown = str(self.path.relative_to(base))
        except ValueError:
            shown = str(self.path)
        return (shown, self.status, self.backbone, self.classes, self.val, self.test, self.final, self.epochs, self.seconds, self.when)


def find_runs(root: str | Path) -> list[Path]:
    """Run directories under ``root`` (or ``root`` itself), oldest first (by the time they started)."""
    base = Path(root)
    if not base.is_dir():
        raise UsageError(f"{base}: no such folder; give the folder your runs are in (default runs/)")
    found = [p.parent for p in base.rglob("metrics.jsonl") if (p.parent / "recipe.toml").is_file()]
    return sorted(found, key=lambda p: ((p / "recipe.toml").stat().st_mtime, str(p)))


def run_row(path: Path) -> RunRow:
    """The run's line; a run whose files are damaged (a summary that is not a run summary or does
    not match its recorded sha256, records of the wrong shape) says so instead of a traceback."""
    summary_file = path / "summary.json"
    summary = _read_json(summary_file)
    if summary_file.is_file() and (not summary or not _intact(summary_file)):
        return _damaged(path, "summary.json")
    try:
        return _row(path, summary)
    except (AttributeError, KeyError, TypeError, ValueError):  # a record or the recipe of an unexpected shape
        return _damaged(path, "its records")


def _damaged(path: Path, what: str) -> RunRow:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime((path / "recipe.toml").stat().st_mtime))
    return RunRow(path, f"damaged ({what})", "?", "-", "-", "-", "-", "-", "-", when)


def _intact(path: Path) -> bool:
    """Whether ``path`` matches the sha256 its folder recorded (true without a record)."""
    checksums = Checksums(path.parent)
    if not checksums.exists():
        return True
    try:
        return checksums.check(path, path.read_bytes()) is None
    except (OSError, TransferkitError):
        return False


def _row(path: Path, summary: dict[str, Any]) -> RunRow:
    recipe = _read_toml(path / "recipe.toml")
    epochs = [r for r in _records(path / "metrics.jsonl") if r.get("kind") == "epoch"]
    done: dict[str, int] = {}
    for record in epochs:
        done[record["phase"]] = max(done.get(record["phase"], 0), int(record["epoch"]))
    phases = recipe.get("phases", {})
    planned = {name: int(phases.get(name, {}).get("epochs", 0)) for name in PHASES}
    epoch_text = "+".join(str(done.get(n, 0)) for n in PHASES)
    if summary:
        status = "finished"
        stopped = [n for n, info in summary.get("phases", {}).items() if info.get("early_stopped")]
        if stopped:
            status += " (stopped early)"
    elif _locked(path):
        status = "running"
    elif epochs:
        last = epochs[-1]
        status = f"stopped at {last['phase']} {last['epoch']}/{planned.get(last['phase'], '?')}"
    else:
        status = "not started"
    # validation accuracy of the weights the run ended with, where known; else of its last epoch
    # (a multi-label run's: macro mean average precision, marked "mAP")
    multilabel = summary.get("task") == "multilabel" or recipe.get("task") == "multilabel"
    on_val, on_test = ("val_macro_map", "macro_map") if multilabel else ("val_top1", "top1")
    chosen = summary.get("final", {})
    val = chosen.get("candidates", {}).get(chosen.get("chosen"), {}).get(on_val)
    if val is None and summary.get("val"):
        val = summary["val"][on_test]
    if val is None:
        val = next((r.get(on_val) for r in reversed(epochs) if r.get(on_val) is not None), None)
    test = summary.get("test", {}).get(on_test) if summary.get("test") else None
    mark = " mAP" if multilabel else ""
    classes = summary.get("classes")
    started = (path / "recipe.toml").stat().st_mtime
    return RunRow(
        path=path,
        status=status,
        backbone=str(recipe.get("backbone", {}).get("name", "?")),
        classes=str(len(classes)) if classes else "-",
        val=_figure(val) + (mark if val is not None else ""),
        test=_figure(test) + (mark if test is not None else ""),
        final=str(summary.get("final", {}).get("chosen", "-")) if summary else "-",
        epochs=epoch_text,
        seconds=f"{summary['wall_seconds']:.0f} s" if summary.get("wall_seconds") is not None else "-",
        when=time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
    )


def list_runs(root: str | Path = "runs") -> list[RunRow]:
    return [run_row(p) for p in find_runs(root)]


def format_runs(rows: list[RunRow], root: str | Path) -> str:
    if not rows:
        return f"no runs under {root} (a run directory holds recipe.toml and metrics.jsonl)"
    table = [HEADER] + [row.cells(Path(root)) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table)


def _figure(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object, or {} (absent, unreadable, or not an object)."""
    try:
        value = json.loads(path.read_bytes()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError and TOMLDecodeError are ValueErrors
        return {}


def _records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of ``metrics.jsonl``; damaged lines (cut short, not UTF-8, not objects) left out."""
    out = []
    try:
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(record, dict):
            out.append(record)
    return out


def _locked(path: Path) -> bool:
    """Whether a live transferkit process holds the run's ``.lock`` (``RunDir.lock``)."""
    try:  # read-only and never through a link: looking must not create or truncate anything
        fd = os.open(path / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
