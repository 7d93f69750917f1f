"""Label cells that hold several labels (``cat;dog``), for multi-label classification (issue 26):
reading them, the label vocabulary, the ``N x L`` multi-hot matrix, and which labels a split lacks.

Nothing is dropped silently. A cell is a list someone typed, so an empty piece (``cat;;dog``,
``cat;``), an empty cell or a label written twice is far more often a slip than a meaning; each
is refused with one line naming the file, the line, the cell and the fix, rather than trained on
as if the image had one label fewer. Spaces around a label are not part of it (``cat ; dog`` is
``cat`` and ``dog``), as the CSV manifest strips its cells.

A label with no positive image in a split cannot be scored there (its average precision is
undefined) nor learnt from it (a logistic head's bias would run off to minus infinity): the
functions at the end say which labels those are, so that the caller can name them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError
from .sources import capped


class LabelCellError(DataError):
    """A label cell that cannot be read; ``at`` gives it the file and line it came from."""

    def __init__(self, cell: str, sep: str, problem: str, fix: str, where: str = "") -> None:
        self.cell, self.sep, self.problem, self.fix, self.where = cell, sep, problem, fix, where
        prefix = f"{where}: " if where else ""
        super().__init__(f'{prefix}{problem} in "{cell}" (separator "{sep}"): {fix}')

    def at(self, origin: str, line: int, more: str = "") -> "LabelCellError":
        """The same error, saying it is on ``line`` of ``origin`` (and, in ``more``, what follows)."""
        return LabelCellError(self.cell, self.sep, self.problem, self.fix + more, f"{origin} line {line}")


def split_labels(cell: str, sep: str = ";") -> tuple[str, ...]:
    """The labels of one cell in the cell's order, each stripped of surrounding spaces. An empty
    cell, an empty piece or a label written twice raises ``LabelCellError``."""
    if not sep:
        raise ValueError("the label separator must be a non-empty string")
    if not cell.strip():
        raise LabelCellError(cell, sep, "no label", "give the image at least one label, or leave its row out")
    pieces = [piece.strip() for piece in cell.split(sep)]
    if not pieces[0] and len(pieces) > 1:
        raise LabelCellError(cell, sep, "empty label", "remove the leading separator")
    if not pieces[-1]:
        raise LabelCellError(cell, sep, "empty label", "remove the trailing separator")
    if "" in pieces:
        raise LabelCellError(cell, sep, "empty label", "remove the doubled separator")
    seen: set[str] = set()
    for label in pieces:
        if label in seen:
            raise LabelCellError(cell, sep, f'label "{label}" twice', "list each label once")
        seen.add(label)
    return tuple(pieces)


def read_multilabel_rows(rows: Iterable[tuple[int, str]], sep: str = ";", origin: str = "labels") -> list[tuple[str, ...]]:
    """The label tuple of each ``(line number, cell)`` pair, in order. Every row is read before an
    error is raised, so the one line names the first bad cell and the lines of the others: the
    user fixes the file once, not once per run."""
    out: list[tuple[str, ...]] = []
    first: tuple[int, LabelCellError] | None = None
    later: list[int] = []
    for line, cell in rows:
        try:
            out.append(split_labels(cell, sep))
        except LabelCellError as error:
            if first is None:
                first = (line, error)
            else:
                later.append(line)
    if first is not None:
        line, error = first
        more = f"; {len(later)} more bad label cell(s), line(s) {capped(later, 6)}" if later else ""
        raise error.at(origin, line, more)
    return out


def vocabulary(label_sets: Iterable[Sequence[str]]) -> list[str]:
    """Every label that occurs, sorted: column ``j`` of the multi-hot matrix is ``vocabulary[j]``
    (sorted, as single-label classes are, so the order does not depend on the rows' order)."""
    return sorted({label for labels in label_sets for label in labels})


def multi_hot(label_sets: Sequence[Sequence[str]], vocab: Sequence[str]) -> np.ndarray:
    """``[N, L]`` uint8 matrix: row ``i`` has a 1 in the column of each of image ``i``'s labels.
    A label outside ``vocab`` (a validation label the training images never had) raises a
    ``DataError`` naming it: silently dropping it would score the image against a wrong truth."""
    column = {label: j for j, label in enumerate(vocab)}
    if len(column) != len(vocab):
        raise ValueError("the vocabulary lists a label twice")
    matrix = np.zeros((len(label_sets), len(vocab)), dtype=np.uint8)
    unknown: dict[str, int] = {}
    for i, labels in enumerate(label_sets):
        for label in labels:
            j = column.get(label)
            if j is None:
                unknown.setdefault(label, i)
            else:
                matrix[i, j] = 1
    if unknown:
        names = capped(sorted(unknown))
        raise DataError(f"{len(unknown)} label(s) not in the vocabulary of {len(vocab)}: {names} (first in row "
                        f"{min(unknown.values())}, counting from 0); add them to the training images or remove them from these rows")
    return matrix


def label_counts(matrix: np.ndarray, vocab: Sequence[str]) -> dict[str, int]:
    """Positive images per label, in vocabulary order."""
    matrix = _checked(matrix, vocab)
    return {label: int(count) for label, count in zip(vocab, matrix.sum(axis=0))}


def labels_without_positives(matrix: np.ndarray, vocab: Sequence[str]) -> list[str]:
    """Labels that no image of ``matrix`` (a split) has: there they have no average precision,
    and a head cannot learn them."""
    matrix = _checked(matrix, vocab)
    return [label for label, count in zip(vocab, matrix.sum(axis=0)) if count == 0]


def labels_without_negatives(matrix: np.ndarray, vocab: Sequence[str]) -> list[str]:
    """Labels that every image of ``matrix`` has: as unlearnable as those no image has (a
    classifier that always says yes is perfect on them), and as uninformative to score."""
    matrix = _checked(matrix, vocab)
    return [label for label, count in zip(vocab, matrix.sum(axis=0)) if count == len(matrix)]


@dataclass(frozen=True)
class SplitCoverage:
    """Which labels a named split cannot score or learn: ``message`` is one line, or "" when none."""

    split: str
    without_positives: list[str]
    without_negatives: list[str]

    @property
    def message(self) -> str:
        parts = []
        if self.without_positives:
            parts.append(f"no positive image for {len(self.without_positives)} label(s): {capped(self.without_positives)}")
        if self.without_negatives:
            parts.append(f"every image has {len(self.without_negatives)} label(s): {capped(self.without_negatives)}")
        return f"{self.split}: " + "; ".join(parts) if parts else ""


def split_coverage(matrix: np.ndarray, vocab: Sequence[str], split: str) -> SplitCoverage:
    """The labels ``split`` lacks positives or negatives for, as one report."""
    return SplitCoverage(split, labels_without_positives(matrix, vocab), labels_without_negatives(matrix, vocab))


def _checked(matrix: np.ndarray, vocab: Sequence[str]) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] != len(vocab):
        raise ValueError(f"expected a [N, {len(vocab)}] multi-hot matrix, got shape {matrix.shape}")
    return matrix
