"""``transferkit predict`` for a multi-label run (issue 26): what it prints and writes.

Each line is the file, a tab, then the labels whose probability reaches their threshold, most
probable first, each with its probability (``hat 0.992  shirt 0.966``; ``(none)`` when no
label does); with ``--top-k K`` the K most probable labels instead, whatever their thresholds.
``--output preds.csv``: ``path,labels`` (the labels above threshold joined by ``;``, empty when
none), then one column per label with its probability. ``--output preds.json``: the labels,
their thresholds, one record per file (``labels``, every label's ``probabilities``) and the files
skipped. The probabilities are sigmoids, one per label: they need not sum to 1.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.rundir.checkpoint_io import atomic_write
from .errors import printable
from .label_sets import LabelSetPrediction

if TYPE_CHECKING:  # predict_files imports this module
    from .predict_files import FilePredictions

NONE = "(none)"
SEPARATOR = ";"  # between the labels of one CSV cell, as a multi-label CSV manifest writes them


def label_set_line(path: str, prediction: LabelSetPrediction, top_k: bool = False) -> str:
    """One file's line: its path (control characters escaped: a name cannot forge a line), a tab,
    then its labels above threshold with their probabilities, or ``top_k``'s labels."""
    shown = prediction.top_k if top_k else list(prediction.probabilities.items())
    ranked = "  ".join(f"{printable(name)} {p:.3f}" for name, p in shown)
    return f"{printable(path)}\t{ranked or NONE}"


def write_label_sets(result: FilePredictions, path: Path) -> None:
    """``result`` (a multi-label run's) as CSV or JSON, by ``path``'s suffix, written atomically."""
    if path.suffix.lower() == ".csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path", "labels", *result.classes])
        for (file, probs), labels in zip(result.rows, result.labels):
            writer.writerow([file, SEPARATOR.join(labels), *(f"{p:.6f}" for p in probs)])
        text = out.getvalue()
    else:
        thresholds = [] if result.thresholds is None else [float(t) for t in result.thresholds]
        records: list[dict[str, Any]] = [
            {"path": file, "labels": labels, "probabilities": dict(zip(result.classes, probs))}
            for (file, probs), labels in zip(result.rows, result.labels)
        ]
        skipped = [{"path": file, "reason": why} for file, why in result.skipped]
        text = json.dumps({"task": "multilabel", "classes": result.classes, "thresholds": dict(zip(result.classes, thresholds)),
                           "predictions": records, "skipped": skipped}, indent=2) + "\n"
    data = text.encode("utf-8", "surrogateescape")
    atomic_write(path, lambda fh: fh.write(data))
