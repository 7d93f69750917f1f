"""A multi-label data set from a CSV manifest (``task = "multilabel"``): rows ``path,label[,split]``
whose label cell lists the image's labels (``dog;grass``, ``data.label_separator``).

The splits are ``DatasetSplits`` like a single-label source's, so decoding, loading, the feature
cache and prediction serve them unchanged; only their ``targets`` mean something else: each is
the image's row in ``MultiLabelData.matrix`` (``[N, L]`` multi-hot, columns ``labels``). A split
the CSV does not give is carved from ``train`` by iterative stratification, so that each label keeps
its share of positives in every part (a per-class stratified split does not apply: an image has
several classes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from .csv_rows import read_csv_rows
from .iterative_stratification import iterative_split
from .multilabel_labels import label_counts, multi_hot, read_multilabel_rows, split_coverage, vocabulary
from .sources import DatasetSplits, FileImages, capped

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class MultiLabelData:
    """The splits (targets: rows of ``matrix``), the multi-hot matrix and the label names."""

    splits: DatasetSplits
    matrix: np.ndarray  # [N, L] uint8, every image of every split
    labels: list[str]
    notes: list[str] = field(default_factory=list)

    def targets(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The multi-hot rows ``[n, L]`` of the images whose targets are ``rows``."""
        return self.matrix[np.asarray(rows, dtype=np.int64)]

    def counts(self) -> dict[str, dict[str, int]]:
        """Positive images per label in each split present."""
        return {name: label_counts(self.targets(images.targets), self.labels) for name, images in self.splits.parts().items()}


def read_multilabel_csv(
    path: str | Path, *, separator: str = ";", val_fraction: float = 0.1, test_fraction: float | None = None, seed: int = 0,
) -> MultiLabelData:
    """Read the manifest, build the label vocabulary from its training rows, and make the splits
    (the CSV's own, else carved from train: ``test_fraction`` first, then ``val_fraction``)."""
    read = read_csv_rows(path)
    sets = read_multilabel_rows(((row.line, row.label) for row in read.rows), separator, origin=str(read.path))
    train_sets = [labels for labels, row in zip(sets, read.rows) if row.split == "train"]
    if not train_sets:
        raise DataError(f"{read.path}: no row has split train; give the training images split = train (or no split column)")
    labels = vocabulary(train_sets)
    if len(labels) < 2:
        raise DataError(f"{read.path}: the training rows name {len(labels)} label ({capped(labels)}); a multi-label"
                        " classifier needs at least 2")
    try:
        matrix = multi_hot(sets, labels)
    except DataError as exc:
        raise DataError(f"{read.path}: the val/test rows name labels no training row has: {exc}") from None
    parts = {name: np.array([i for i, row in enumerate(read.rows) if row.split == name], dtype=np.int64) for name in SPLIT_NAMES}
    notes: list[str] = []
    if not len(parts["test"]) and test_fraction:
        parts["train"], parts["test"] = _carve(matrix, parts["train"], test_fraction, seed)
    if not len(parts["val"]) and val_fraction > 0:
        parts["train"], parts["val"] = _carve(matrix, parts["train"], val_fraction, seed)
    _check_training_labels(read.path, matrix[parts["train"]], labels)
    for name in ("val", "test"):
        if len(parts[name]):
            message = split_coverage(matrix[parts[name]], labels, name).message
            if message:
                notes.append(f"{read.path}: {message}; those labels are left out of this split's mean average precision")
    paths = [row.path for row in read.rows]

    def images(name: str) -> FileImages | None:
        rows = parts[name]
        return FileImages([paths[i] for i in rows], rows.tolist(), labels) if len(rows) else None

    splits = DatasetSplits(images("train"), images("val"), images("test"), notes)
    return MultiLabelData(splits, matrix, labels, notes)


def _carve(matrix: np.ndarray, rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` split into (kept, held out) with each label's positives shared by ``fraction``."""
    kept, held = iterative_split(matrix[rows], (1.0 - fraction, fraction), seed=seed)
    return rows[kept], rows[held]


def _check_training_labels(path: Path, train: np.ndarray, labels: list[str]) -> None:
    """A label the training split has no positive (or no negative) image of cannot be learnt."""
    coverage = split_coverage(train, labels, "train")
    if coverage.message:
        raise DataError(f"{path}: after the validation and test images are held out, the training split has {coverage.message[7:]};"
                        " a head cannot learn such a label: add images, or leave the label out")
