"""The rows of a CSV manifest (``path,label[,split]``), read and checked once for every reader of
it: the single-label ``csv`` source (``builtin/csv_manifest``) and the multi-label one
(``data/multilabel_csv``). What they make of a label cell is theirs.

Written by hand or by Excel, such files are messy; what is tolerated and what is refused:
- a UTF-8 byte-order mark, spaces around column names and values, blank lines, column names in
  any case: tolerated;
- a header without ``path`` and ``label``: refused, showing the header found;
- an empty path or label, a short row, an unknown split: refused, naming the lines.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .image_files import read_regular_file
from .sources import capped

SPLITS = ("train", "val", "test")
MAX_CSV_BYTES = 1 << 30  # millions of rows; more would not fit in memory as rows anyway


@dataclass
class CsvRow:
    line: int  # in the file, counting from 1 (the header's)
    path: Path  # the image, resolved against the CSV's folder
    label: str  # the label cell, stripped
    split: str  # train, val or test ("train" without a split column)


@dataclass
class CsvRows:
    path: Path
    header: list[str]
    rows: list[CsvRow]
    has_split_column: bool


def read_csv_rows(path: str | Path) -> CsvRows:
    """Read and check a CSV manifest's rows (see the module's docstring for what is refused)."""
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
    parsed: list[CsvRow] = []
    for number, row in lines[1:]:
        cells = [c.strip() for c in row]
        if len(cells) <= max(col.values()):
            problems.setdefault(f"have fewer than {max(col.values()) + 1} columns", []).append(f"line {number}")
            continue
        image, label = cells[col["path"]], cells[col["label"]]
        split = cells[col["split"]].lower() if "split" in col else ""
        if not image:
            problems.setdefault("have an empty path", []).append(f"line {number}")
        if not label:
            problems.setdefault("have an empty label", []).append(f"line {number}")
        if split and split not in SPLITS:
            problems.setdefault("have a split other than train, val or test", []).append(f"line {number} ({split!r})")
        parsed.append(CsvRow(number, manifest.parent / image, label, split or "train"))
    if problems:
        what, where = next(iter(problems.items()))
        raise DataError(f"{manifest}: {len(where)} row(s) {what}: {capped(where, 6, quote=False)}; fix or remove them")
    if not parsed:
        raise DataError(f"{manifest}: a header and no rows; add one row per image (path,label)")
    return CsvRows(manifest, header, parsed, "split" in col)
