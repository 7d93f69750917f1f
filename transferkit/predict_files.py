"""``transferkit predict``: classify image files and folders with a finished run (or an ensemble).

A file that cannot be read is reported on its own line and skipped; the rest are predicted; the
command then exits 1 saying how many were skipped. ``--output preds.csv`` or ``preds.json``
writes every file's prediction with the probability of every class. A multi-label run answers
each file's labels above their thresholds instead (``label_set_files``).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .data.decoding import decode_file
from .engine.rundir.checkpoint_io import atomic_write
from .engine.rundir.manifest_task import MULTILABEL
from .engine.rundir.output_paths import check_output_file
from .errors import DataError, UsageError, printable
from .inference import Ensemble, TrainedModel, image_files
from .label_set_files import label_set_line, write_label_sets
from .label_sets import refuse_reject

CHUNK = 64  # files decoded (each shrunk at once) and predicted at a time: bounded memory, output as it goes
OUTPUT_KINDS = (".csv", ".json")


@dataclass
class FilePredictions:
    """Each predicted file with its class probabilities, and the files skipped with the reason.
    A multi-label run's: ``thresholds`` (one per class) and each row's ``labels`` above them."""

    classes: list[str]
    rows: list[tuple[str, list[float]]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unknown: set[str] = field(default_factory=set)  # files answered "unknown" (``reject``)
    thresholds: np.ndarray | None = None
    labels: list[list[str]] = field(default_factory=list)  # in step with ``rows`` (multi-label)


def check_output(output: str | Path | None) -> Path | None:
    """``--output``'s kind, before anything is predicted."""
    if output is None:
        return None
    path = Path(output)
    if path.suffix.lower() not in OUTPUT_KINDS:
        raise UsageError(f"--output {path}: name a .csv or .json file")
    if path.is_dir():
        raise UsageError(f"--output {path}: a folder; name a .csv or .json file")
    return check_output_file(path, "--output")  # writable, and never one of a run's own files


def predict_files(
    model: TrainedModel | Ensemble,
    paths: Sequence[str | Path],
    *,
    top_k: int | None = None,
    tta: str | None = None,
    output: str | Path | None = None,
    raw: bool = False,
    reject: float | str | None = None,
    show: Callable[[str], None] = print,
    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> FilePredictions:
    """Predict every image file in ``paths`` (files, and the image files inside folders): one
    line per file to ``show`` (path, then the top-k classes with their probabilities; ``top_k``
    1 by default), one line per unreadable file to ``warn``; ``output`` gets every class's
    probability. Probabilities are calibrated unless ``raw``; with ``reject`` (a false-rejection
    rate, or "auto") a file whose calibrated top probability is below the run's threshold is
    answered ``unknown``.

    A multi-label run: each line names the labels above their thresholds (``(none)`` when no
    label is), or with ``top_k`` the k most probable labels; ``reject`` is refused."""
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k {top_k}: give 1 or more (the number of most likely classes shown)")
    target = check_output(output)
    multilabel = model.task == MULTILABEL
    if multilabel and reject is not None:
        raise refuse_reject(model.describe())
    files = image_files(paths)
    if not files:
        raise DataError(f"predict: no image files in {' '.join(map(str, paths))}")
    result = FilePredictions(list(model.classes), thresholds=model.thresholds)
    k = min(top_k or 1, len(model.classes))
    for good, arrays in _decoded_chunks(files, model.decode_side, result, warn):
        if multilabel:
            for path, labelled in zip(good, model.predict(arrays, top_k=k, tta=tta)):
                show(label_set_line(path, labelled, top_k is not None))
                result.rows.append((path, [labelled.scores[name] for name in model.classes]))
                result.labels.append(labelled.labels)
            continue
        answers = model.predict(arrays, top_k=len(model.classes), tta=tta, raw=raw, reject=reject)
        for path, pred in zip(good, answers):
            ranked = "  ".join(f"{printable(name)} {p:.3f}" for name, p in pred.top_k[:k])
            shown = printable(path)  # a tab, newline or escape in a name cannot forge a line
            show(f"{shown}\tunknown (closest: {ranked})" if pred.rejected else f"{shown}\t{ranked}")
            probs = dict(pred.top_k)
            result.rows.append((path, [probs[name] for name in model.classes]))
            if pred.rejected:
                result.unknown.add(path)
    if target is not None:
        (write_label_sets if multilabel else write_predictions)(result, target)
    return result


def _decoded_chunks(
    files: Sequence[Path], shorter: int, result: FilePredictions, warn: Callable[[str], None]
) -> Iterator[tuple[list[str], list[Any]]]:
    """``CHUNK`` files at a time, decoded and shrunk to ``shorter`` at once (one full-resolution
    image at a time): the paths that decoded and their arrays. An unreadable file goes into
    ``result.skipped`` with one line to ``warn``."""
    for start in range(0, len(files), CHUNK):
        good, arrays = [], []
        for path in files[start : start + CHUNK]:
            array, reason = decode_file(path, shorter)
            if array is None:
                result.skipped.append((str(path), reason))
                warn(f"transferkit: skipped {printable(str(path))}: {printable(reason)}")  # a name cannot split the line
                continue
            good.append(str(path))
            arrays.append(array)
        if arrays:
            yield good, arrays


def write_predictions(result: FilePredictions, path: Path) -> None:
    """CSV: ``path,label,probability`` then one column per class (``label`` is ``unknown`` for a
    rejected file; ``probability`` is its closest class's). JSON: the classes, one record
    per file (label, probability, every class's probability) and the skipped files."""
    if path.suffix.lower() == ".csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path", "label", "probability", *result.classes])
        for file, probs in result.rows:
            best = max(range(len(probs)), key=probs.__getitem__)
            label = "unknown" if file in result.unknown else result.classes[best]
            writer.writerow([file, label, f"{probs[best]:.6f}", *(f"{p:.6f}" for p in probs)])
        text = out.getvalue()
    else:
        records: list[dict[str, Any]] = []
        for file, probs in result.rows:
            best = max(range(len(probs)), key=probs.__getitem__)
            label = "unknown" if file in result.unknown else result.classes[best]
            records.append({"path": file, "label": label, "closest": result.classes[best], "probability": probs[best],
                            "probabilities": dict(zip(result.classes, probs))})
        skipped = [{"path": file, "reason": why} for file, why in result.skipped]
        text = json.dumps({"classes": result.classes, "predictions": records, "skipped": skipped}, indent=2) + "\n"
    data = text.encode("utf-8", "surrogateescape")
    atomic_write(path, lambda fh: fh.write(data))
