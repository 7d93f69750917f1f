"""The ``csv`` data source: a manifest with columns ``path,label`` and optionally ``split``
(train / val / test). Paths are relative to the CSV's own folder (or absolute).

What the rows may and may not hold: ``data.csv_rows``. Besides:
- labels that differ only in case, spaces, ``-`` or ``_`` (``Daisy`` / ``daisy``), and labels
  that look like several (``daisy;sunflower``): warned, in the run's log and by ``validate``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..data.csv_rows import SPLITS, read_csv_rows
from ..data.sources import FileImages, capped

MULTI_LABEL = re.compile(r"[;|]")


@dataclass
class Manifest:
    """A CSV manifest read and checked: its images per split (class indices into ``classes``)."""

    path: Path
    header: list[str]
    classes: list[str]
    rows: dict[str, list[tuple[Path, int]]]
    has_split_column: bool
    notes: list[str] = field(default_factory=list)

    def images(self, split: str) -> FileImages | None:
        rows = self.rows.get(split)
        if rows is None:
            return None
        return FileImages([p for p, _ in rows], [t for _, t in rows], self.classes)

    def everything(self) -> FileImages:
        rows = [r for split in SPLITS for r in self.rows.get(split, [])]
        return FileImages([p for p, _ in rows], [t for _, t in rows], self.classes)


def read_manifest(path: str | Path) -> Manifest:
    """Read and check a CSV manifest (``data.csv_rows``; see the module's docstring)."""
    read = read_csv_rows(path)
    classes = sorted({row.label for row in read.rows})
    index = {c: i for i, c in enumerate(classes)}
    rows: dict[str, list[tuple[Path, int]]] = {}
    for row in read.rows:
        rows.setdefault(row.split, []).append((row.path, index[row.label]))
    return Manifest(read.path, read.header, classes, rows, read.has_split_column, label_warnings(read.path, classes))


def label_warnings(manifest: Path, classes: list[str]) -> list[str]:
    """Class names that are probably typos of each other, or several labels in one."""
    notes = []
    groups: dict[str, list[str]] = {}
    for name in classes:
        groups.setdefault(re.sub(r"[\s_\-]+", "", name.lower()), []).append(name)
    for names in groups.values():
        if len(names) > 1:
            notes.append(f"{manifest}: labels {capped(names)} differ only in case, spaces, '-' or '_' and make"
                         f" {len(names)} classes; if they are one class, write them alike")
    several = [name for name in classes if MULTI_LABEL.search(name)]
    if several:
        notes.append(f"{manifest}: labels {capped(several)} look like several labels in one; each image gets one label"
                     ' (the whole text is its class); for several labels per image set task = "multilabel"')
    return notes
