"""Evaluating a finished multi-label run (``manifest.json``'s ``task``): on its own test (or
validation) split as ``splits.csv`` recorded it, or on a CSV manifest given with ``--data`` (its
test rows, else its val rows, else all), with the label separator of the run's recipe. The figures
are ``engine.evaluation.multilabel_metrics``' at the run's own thresholds: the same the run wrote
into its summary, from the same predictions (``engine.evaluation.predict``).

``multilabel_rows`` picks the labelled images, ``multilabel_predictions`` predicts a run on them:
``compare`` predicts a second run on the first run's rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data.csv_rows import read_csv_rows
from .data.multilabel_labels import multi_hot, read_multilabel_rows
from .data.sources import FileImages
from .engine.evaluation.multilabel_metrics import multilabel_metrics
from .engine.multilabel.phases import sigmoid
from .engine.rundir.manifest_task import task_of
from .engine.rundir.model_files import MANIFEST_FILE, read_manifest
from .engine.rundir.run_dir import RunDir
from .errors import DataError
from .inference import load
from .recipe_loading import read_toml
from .recipe_tasks import MULTILABEL


def is_multilabel_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a multi-label model (a manifest whose ``task`` says so)."""
    return (Path(run_dir) / MANIFEST_FILE).is_file() and task_of(read_manifest(Path(run_dir))) == MULTILABEL


@dataclass
class LabelledRows:
    """The labelled images a run is evaluated on: ``(line, label cell, image)``, the file they come
    from and the separator of its label cells."""

    rows: list[tuple[int, str, str]]
    where: str  # which images, in words
    origin: str
    separator: str


@dataclass
class MultiLabelPredictions:
    """A multi-label run's probabilities ``[N, L]`` on labelled images, with their multi-hot truth."""

    probs: np.ndarray
    targets: np.ndarray
    labels: list[str]
    thresholds: list[float]
    where: str  # which images, in words
    skipped: list[tuple[str, str]]
    kept: np.ndarray  # the rows (of ``LabelledRows.rows``) the probabilities are of: those that could be read


def multilabel_rows(run_dir: str | Path, data: str | Path | None = None, split: str | None = None) -> LabelledRows:
    """The images a run is evaluated on: its own split (``splits.csv``: test, else val) or ``data``'s."""
    run = RunDir(run_dir)
    separator = read_toml(run.recipe_file).get("data", {}).get("label_separator", ";") if run.recipe_file.is_file() else ";"
    rows, where = _data_rows(Path(data), split) if data is not None else _split_rows(run, split)
    return LabelledRows(rows, where, str(data or run.splits_file), separator)


def multilabel_predictions(run_dir: str | Path, data: str | Path | None = None, split: str | None = None,
                           *, rows: LabelledRows | None = None) -> MultiLabelPredictions:
    """The run's probabilities on its own split (``splits.csv``: test, else val), on ``data``, or
    on ``rows`` (another run's, from ``multilabel_rows``)."""
    run = RunDir(run_dir)
    manifest = read_manifest(run.path)
    labels, thresholds = manifest["classes"], manifest["thresholds"]["values"]
    chosen = rows if rows is not None else multilabel_rows(run.path, data, split)
    label_sets = read_multilabel_rows(((line, cell) for line, cell, _ in chosen.rows), chosen.separator, origin=chosen.origin)
    try:
        targets = multi_hot(label_sets, labels)
    except DataError as exc:
        raise DataError(f"{chosen.origin}: the labels are not those of the model in {run.path}: {exc}") from None
    images = FileImages([image for _, _, image in chosen.rows], list(range(len(chosen.rows))), labels)
    predicted = load(run.path).predictions(images, raw=True, on_bad="skip")
    if predicted.logits is None:
        raise DataError(f"{run.path}: no logits to evaluate")
    kept = np.asarray(predicted.kept if predicted.kept is not None else np.arange(len(chosen.rows)), dtype=np.int64)
    if not len(kept):
        raise DataError(f"none of the {len(chosen.rows)} images of {chosen.where} could be read")
    return MultiLabelPredictions(sigmoid(predicted.logits), targets[kept], labels, thresholds, chosen.where, predicted.skipped, kept)


def evaluate_multilabel(run_dir: str | Path, data: str | Path | None = None, split: str | None = None) -> dict[str, Any]:
    """The run's figures (macro and micro mAP, per-label AP, F1 and subset accuracy at its
    thresholds) on its own split or on ``data``; ``"where"`` says which images they are."""
    p = multilabel_predictions(run_dir, data, split)
    figures = multilabel_metrics(p.probs, p.targets, p.labels, p.thresholds)
    figures["where"] = p.where
    if p.skipped:
        figures["skipped"] = [{"file": f, "reason": r} for f, r in p.skipped]
    return figures


def _split_rows(run: RunDir, split: str | None) -> tuple[list[tuple[int, str, str]], str]:
    recorded = run.read_splits()
    wanted = split or ("test" if any(r["split"] == "test" for r in recorded) else "val")
    rows = [(n, r["label"], r["image"]) for n, r in enumerate(recorded, start=2) if r["split"] == wanted]
    if not rows:
        raise DataError(f"{run.path}: the run's data has no {wanted} split; give --data CSV (path,label[,split])")
    return rows, f"the {wanted} split ({len(rows)} images)"


def _data_rows(path: Path, split: str | None) -> tuple[list[tuple[int, str, str]], str]:
    if not (path.is_file() and path.suffix.lower() == ".csv"):
        raise DataError(f"--data {path}: a multi-label run is evaluated on a CSV manifest (path,label[,split]) whose label"
                        " cells list each image's labels")
    read = read_csv_rows(path)
    which = split or next((s for s in ("test", "val") if any(r.split == s for r in read.rows)), None)
    chosen = [r for r in read.rows if which is None or r.split == which]
    if not chosen:
        raise DataError(f"--data {path}: no {which} rows")
    rows = f"the {which} rows" if which else "the rows"
    return [(r.line, r.label, str(r.path)) for r in chosen], f"{rows} of {path} ({len(chosen)} images, --data)"
