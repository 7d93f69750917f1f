"""Seeded iterative stratification of multi-label data: split the images of an ``N x L``
multi-hot matrix into parts of given fractions (test / val / train, or k folds) so that every
label's positives are shared out in about those fractions.

Stratifying by class, as ``stratified.py`` does for single labels, does not carry over: the
label *sets* are too many and mostly unique. Sechidis, Tsoumakas and Vlahavas ("On the
stratification of multi-label data", ECML PKDD 2011, Algorithm 1) instead deal out the rarest
label first, while there is still room to share it fairly: each part ``j`` wants ``r_j`` of every
label's positives; the label with the fewest images left goes first, and each of its images goes
to the part that wants that label most (ties: the part that wants the most images, then a seeded
draw); every assignment lowers that part's wants for each label the image has. Rare labels, the
ones a random split leaves out of a small part, are placed before common labels crowd the parts.

Two changes to the paper, both for what a caller relies on:

- **Sizes.** The paper's size wish only breaks ties, so a part can end several images over its
  share. Here the sizes are fixed first (``part_sizes``: the floors, then the largest remainders)
  and a full part takes no more, so each part is within one image of ``fraction x N``.
- **Coverage.** A label with at least as many positives as there are parts is first given one
  positive in each part that has none (the paper would put all three positives of a label in
  train for fractions 0.7 / 0.2 / 0.1, leaving it unscorable on test and val). This gives
  up a little of a rare label's proportions for being present everywhere. It can still fail
  when a label's positives were all placed earlier with a rarer label's; the caller checks
  (``multilabel_labels.labels_without_positives``) rather than trusting it.

Images with no label at all are placed last, filling each part up to its size. The images are
visited in a seeded random order and ties are drawn from the same generator: the same seed gives
the same parts, another seed other parts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def part_sizes(n: int, fractions: Sequence[float]) -> np.ndarray:
    """Integer sizes summing to ``n``, each within one of ``fraction x n``: the floors, then one
    more for the largest remainders (ties: the earlier part)."""
    wanted = np.asarray(fractions, dtype=np.float64) * n
    sizes = np.floor(wanted + 1e-9).astype(np.int64)  # 0.7 * 10 may be 6.999...
    short = n - int(sizes.sum())
    order = np.argsort(-(wanted - sizes), kind="stable")
    sizes[order[:short]] += 1
    return sizes


def _checked(matrix: np.ndarray, fractions: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(matrix)
    if y.ndim != 2:
        raise ValueError(f"expected an [N, L] multi-hot matrix, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("the multi-hot matrix holds values other than 0 and 1")
    r = np.asarray(fractions, dtype=np.float64)
    if r.ndim != 1 or len(r) < 2 or (r <= 0).any() or abs(r.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must be two or more positive numbers summing to 1, got {list(fractions)}")
    if len(y) < len(r):
        raise ValueError(f"{len(y)} image(s) cannot make {len(r)} non-empty parts")
    return y.astype(bool), r


def iterative_split(matrix: np.ndarray, fractions: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """The row indices of each part (sorted), one part per fraction; every row in exactly one.
    ``fractions`` are positive and sum to 1, e.g. ``(0.7, 0.1, 0.2)`` for train / val / test."""
    y, r = _checked(matrix, fractions)
    n, labels = y.shape
    k = len(r)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)  # images are visited in this order: another seed, other parts
    y = y[order]
    capacity = part_sizes(n, r)
    positives = y.sum(axis=0)
    left = positives.copy()  # positives of each label not yet placed
    wants = r[:, None] * positives[None, :].astype(np.float64)  # [k, L]: positives each part still wants
    held = np.zeros((k, labels), dtype=np.int64)  # positives of each label in each part
    cover = positives >= k  # labels that can have a positive in every part
    part_of = np.full(n, -1, dtype=np.int64)
    members = [np.flatnonzero(y[:, j]) for j in range(labels)]
    image_labels = [np.flatnonzero(row) for row in y]

    def place(i: int, part: int) -> None:
        part_of[i] = part
        capacity[part] -= 1
        own = image_labels[i]
        left[own] -= 1
        wants[part, own] -= 1.0
        held[part, own] += 1

    while left.any():
        # the label with the fewest positives left, ties drawn
        rarest = np.flatnonzero(left == left[left > 0].min())
        label = int(rarest[rng.integers(len(rarest))]) if len(rarest) > 1 else int(rarest[0])
        for i in members[label]:
            if part_of[i] >= 0:
                continue
            open_parts = np.flatnonzero(capacity > 0)
            need = cover[label] & (held[open_parts, label] == 0)
            # rounded, so that 2.1 - 1 - 1 and 0.1 tie as they should; the last key is the draw
            keys = (rng.random(len(open_parts)), capacity[open_parts], np.round(wants[open_parts, label], 9), need)
            place(i, int(open_parts[np.lexsort(keys)[-1]]))
    for i in np.flatnonzero(part_of < 0):  # images with no label: fill the parts to their sizes
        open_parts = np.flatnonzero(capacity > 0)
        place(i, int(open_parts[np.lexsort((rng.random(len(open_parts)), capacity[open_parts]))[-1]]))
    return [np.sort(order[part_of == part]) for part in range(k)]


def iterative_folds(matrix: np.ndarray, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (train rows, held-out rows) pairs for k-fold cross-validation: the held-out parts
    are an iterative split into equal fractions, each row held out once."""
    if folds < 2:
        raise ValueError(f"cross-validation needs two or more folds, got {folds}")
    parts = iterative_split(matrix, [1.0 / folds] * folds, seed)
    n = len(matrix)
    return [(np.setdiff1d(np.arange(n), held, assume_unique=True), held) for held in parts]


def proportion_gap(matrix: np.ndarray, parts: Sequence[np.ndarray], fractions: Sequence[float]) -> float:
    """How far the parts are from the requested shares of each label's positives: the mean over
    labels with positives and over parts of ``|positives in part / positives - fraction|``
    (0 for a perfect split). Sechidis et al.'s "label distribution" measure, without squaring."""
    y = np.asarray(matrix).astype(bool)
    positives = y.sum(axis=0)
    present = positives > 0
    shares = np.stack([y[idx].sum(axis=0)[present] / positives[present] for idx in parts])  # [k, L']
    return float(np.abs(shares - np.asarray(fractions, dtype=np.float64)[:, None]).mean())
