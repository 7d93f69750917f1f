"""Label cells with several labels: read in order, nothing dropped silently, one-line errors that
name the file, the line, the cell and the fix; the vocabulary, the multi-hot matrix, the counts."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.data.multilabel_labels import (
    LabelCellError,
    label_counts,
    labels_without_negatives,
    labels_without_positives,
    multi_hot,
    read_multilabel_rows,
    split_coverage,
    split_labels,
    vocabulary,
)
from transferkit.errors import DataError


def test_split_keeps_the_cells_order_and_strips_spaces():
    assert split_labels("dog ; cat;  bird ") == ("dog", "cat", "bird")
    assert split_labels("cat") == ("cat",)
    assert split_labels("a|b", sep="|") == ("a", "b")
    assert split_labels("a;b", sep="|") == ("a;b",)  # another separator: one label


@pytest.mark.parametrize("cell, fix", [
    ("cat;;dog", "remove the doubled separator"),
    ("cat; ;dog", "remove the doubled separator"),
    ("cat;", "remove the trailing separator"),
    (";cat", "remove the leading separator"),
    ("", "give the image at least one label"),
    ("   ", "give the image at least one label"),
    ("cat;dog;cat", "list each label once"),
    ("cat; cat ", "list each label once"),
])
def test_bad_cells_are_refused_with_their_fix(cell, fix):
    with pytest.raises(LabelCellError) as caught:
        split_labels(cell)
    assert isinstance(caught.value, DataError)
    message = str(caught.value)
    assert fix in message and " ".join(f'"{cell}"'.split()) in message  # (a message's whitespace runs are one space)


def test_an_empty_separator_is_a_programming_error():
    with pytest.raises(ValueError):
        split_labels("a", sep="")


def test_rows_error_is_one_line_naming_file_line_cell_and_fix():
    rows = [(2, "cat"), (3, "cat;dog"), (7, "cat;;dog"), (9, "dog;"), (12, "x;x")]
    with pytest.raises(DataError) as caught:
        read_multilabel_rows(rows, ";", origin="labels.csv")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith('labels.csv line 7: empty label in "cat;;dog" (separator ";"): remove the doubled separator')
    assert "2 more bad label cell(s), line(s) 9, 12" in message


def test_a_control_character_in_a_cell_cannot_split_the_line():
    with pytest.raises(DataError) as caught:
        read_multilabel_rows([(4, "cat;\n;dog")], origin="labels.csv")
    assert "\n" not in str(caught.value) and "labels.csv line 4" in str(caught.value)


def test_good_rows_read_in_order():
    assert read_multilabel_rows([(2, "b;a"), (3, "c")], origin="x.csv") == [("b", "a"), ("c",)]


def test_vocabulary_matrix_and_counts():
    sets = [("dog", "cat"), ("cat",), ("bird", "cat"), ("dog",)]
    vocab = vocabulary(sets)
    assert vocab == ["bird", "cat", "dog"]
    matrix = multi_hot(sets, vocab)
    assert matrix.dtype == np.uint8 and matrix.shape == (4, 3)
    assert matrix.tolist() == [[0, 1, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert label_counts(matrix, vocab) == {"bird": 1, "cat": 3, "dog": 2}
    assert labels_without_positives(matrix[[1, 3]], vocab) == ["bird"]
    assert labels_without_negatives(matrix[:3], vocab) == ["cat"]


def test_a_label_outside_the_vocabulary_is_named():
    with pytest.raises(DataError, match=r"1 label\(s\) not in the vocabulary of 2: 'fox' \(first in row 1, counting from 0\)"):
        multi_hot([("cat",), ("fox", "dog")], ["cat", "dog"])


def test_the_report_of_a_split_names_what_it_lacks():
    vocab = ["bird", "cat", "dog"]
    coverage = split_coverage(np.array([[0, 1, 1], [0, 1, 0]]), vocab, "val")
    assert coverage.without_positives == ["bird"] and coverage.without_negatives == ["cat"]
    assert coverage.message == "val: no positive image for 1 label(s): 'bird'; every image has 1 label(s): 'cat'"
    assert split_coverage(np.array([[1, 1, 0], [0, 0, 1]]), vocab, "test").message == ""
    with pytest.raises(ValueError):
        label_counts(np.zeros((2, 2)), vocab)
