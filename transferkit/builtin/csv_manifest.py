"""The ``csv`` data source: a manifest with columns ``path,label`` and optionally ``split``
(train / val / test). Paths are relative to the CSV's own folder (or absolute).

Written by hand or by Excel, such files are messy; what is tolerated and what is refused:
- a UTF-8 byte-order mark, spaces around column names and values, blank lines, column names in
  any case: tolerated;
- a header without ``path`` and ``label``: refused, showing the header found;
- an empty path or label, a short row, an unknown split: refused, naming the lines;
- labels that differ only in case, spaces, ``-`` or ``_`` (``Daisy`` / ``daisy``), and labels
  that look like several (``daisy;sunflower``): warned, in the run's log and by ``validate``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..data.image_files import read_regular_file
from ..data.sources import FileImages, capped
from ..errors import DataError

SPLITS = ("train", "val", "test")
MULTI_LABEL = re.compile(r"[;|]")
MAX_CSV_BYTES = 1 << 30  # millions of rows; more would not fit in memory as rows anyway


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
    """Read and check a CSV manifest (see the module's docstring for what is refused)."""
    manifest = Path(path)
    if manifest.is_dir():
        raise DataError(f"{manifest}: a folder; the csv source reads a CSV file (data.root = path/to/manifest.csv);"
                        ' for a folder of class folders use data.source = "imagefolder"')
    if not manifest.exists():
        raise DataError(f"{manifest}: no such CSV file")
    try:  # a regular file only (a FIFO would block for ever), and bounded
        text = read_regular_file(manifest, MAX_CSV_BYTES, "CSV file").decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{manifest}: not UTF-8 text; save the CSV as UTF-8 (Excel: CSV UTF-8)") from None
    lines = [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text)), start=1) if any(c.strip() for c in row)]
    if not lines:
        raise DataError(f"{manifest}: the CSV is empty; expected a header path,label[,split] and one row per image")
    found = lines[0][1]
    header = [h.strip().lower() for h in found]
    if "path" not in header or "label" not in header:
        hint = "; it seems to use ';' as separator: save it with commas" if len(found) == 1 and ";" in found[0] else ""
        raise DataError(f"{manifest}: the header is {', '.join(repr(h) for h in found)}; expected columns path,label[,split]{hint}")
    col = {name: header.index(name) for name in ("path", "label", "split") if name in header}
    problems: dict[str, list[str]] = {}
    parsed: list[tuple[str, str, str]] = []
    for number, row in lines[1:]:
        cells = [c.strip() for c in row]
        if len(cells) <= max(col.values()):
            problems.setdefault(f"have fewer than {max(col.values()) + 1} columns", []).append(f"line {number}")
            continue
        path, label = cells[col["path"]], cells[col["label"]]
        split = cells[col["split"]].lower() if "split" in col else ""
        if not path:
            problems.setdefault("have an empty path", []).append(f"line {number}")
        if not label:
            problems.setdefault("have an empty label", []).append(f"line {number}")
        if split and split not in SPLITS:
            problems.setdefault("have a split other than train, val or test", []).append(f"line {number} ({split!r})")
        parsed.append((path, label, split or "train"))
    if problems:
        what, where = next(iter(problems.items()))
        raise DataError(f"{manifest}: {len(where)} row(s) {what}: {capped(where, 6, quote=False)}; fix or remove them")
    if not parsed:
        raise DataError(f"{manifest}: a header and no rows; add one row per image (path,label)")
    classes = sorted({label for _, label, _ in parsed})
    index = {c: i for i, c in enumerate(classes)}
    rows: dict[str, list[tuple[Path, int]]] = {}
    for path, label, split in parsed:
        rows.setdefault(split, []).append((manifest.parent / path, index[label]))
    return Manifest(manifest, header, classes, rows, "split" in col, label_warnings(manifest, classes))


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
                     " (the whole text is its class)")
    return notes
