"""What ``transferkit audit`` flags, one finding per image, most suspect first: the label scores,
duplicate pairs and outlier scores of ``label_scores`` and ``similarity`` turned into rows.

Kinds, in the order the CSV and the page list them (an image with several issues is listed once,
under the first, with the others in ``also``):

1. ``leak`` — a validation or test image that duplicates an image of an earlier split (train, then
   val): its accuracy is measured on an image the model trained on;
2. ``duplicate`` — another copy of an image in the same split (the first copy is not flagged);
3. ``mislabeled`` — likely wrong label (``suggested`` is the probe's class);
4. ``outlier`` — unlike any training image.

``score`` ranks within a kind, higher is more suspect: the similarity for leaks and duplicates
(1.0 for the same bytes), 1 - p(given label) for mislabeled images, the robust z-score of the k-NN
distance for outliers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .label_scores import LabelIssues
from .similarity import OUTLIER_Z, DuplicatePair, duplicate_groups

KINDS = ("leak", "duplicate", "mislabeled", "outlier")
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


@dataclass
class Finding:
    """One flagged image (an index into the audited images)."""

    index: int
    kind: str
    score: float
    suggested: int  # the probe's class for this image
    p_given: float
    duplicate_of: int | None = None
    detail: str = ""
    also: list[str] = field(default_factory=list)


def _duplicate_findings(pairs: Sequence[DuplicatePair], splits: Sequence[str], labels: np.ndarray,
                        classes: Sequence[str], names: Sequence[str]) -> dict[int, tuple[str, float, int, str]]:
    """Per flagged copy: (kind, score, the copy it duplicates, detail). In each group of copies the
    first (train before val before test) is kept; each other member points at its best partner,
    an earlier split's image when there is one."""
    rank = [SPLIT_ORDER.get(s, len(SPLIT_ORDER)) for s in splits]
    partners: dict[int, list[tuple[DuplicatePair, int]]] = {}
    for pair in pairs:
        partners.setdefault(pair.first, []).append((pair, pair.second))
        partners.setdefault(pair.second, []).append((pair, pair.first))
    out = {}
    for group in duplicate_groups(list(pairs), len(splits)):
        for member in group[1:]:
            leak = any(rank[other] < rank[member] for other in group)
            mine = partners[member]
            pool = ([x for x in mine if rank[x[1]] < rank[member]] if leak else []) or [x for x in mine if x[1] < member] or mine
            pair, other = max(pool, key=lambda x: (x[0].score, -x[1]))
            if pair.same_bytes:
                detail = f"same bytes as {names[other]}"
            elif pair.evidence == "pixels":
                detail = f"same pixels as {names[other]} (thumbnail correlation {pair.pixel_similarity:.3f})"
            else:
                detail = f"looks like {names[other]} (feature similarity {pair.feature_similarity:.3f})"
            if labels[other] != labels[member]:
                detail += f"; labelled {classes[labels[member]]} here but {classes[labels[other]]} there"
            out[member] = ("leak" if leak else "duplicate", pair.score, other, detail)
    return out


def collect_findings(
    *,
    splits: Sequence[str],
    labels: np.ndarray,
    classes: Sequence[str],
    names: Sequence[str],
    probs: np.ndarray,
    label_issues: LabelIssues,
    pairs: Sequence[DuplicatePair],
    outlier_z: np.ndarray,
    outlier_threshold: float = OUTLIER_Z,
) -> list[Finding]:
    """Every flagged image once, sorted by kind (``KINDS``) and then by score, highest first."""
    labels = np.asarray(labels, dtype=np.int64)
    issues: dict[int, dict[str, tuple[float, int | None, str]]] = {}
    for member, (kind, score, other, detail) in _duplicate_findings(pairs, splits, labels, classes, names).items():
        issues.setdefault(member, {})[kind] = (score, other, detail)
    for i in label_issues.flagged.tolist():
        suggested = int(label_issues.suggested[i])
        detail = f"p({classes[labels[i]]}) = {label_issues.self_confidence[i]:.3f}, p({classes[suggested]}) = {probs[i, suggested]:.3f}"
        issues.setdefault(i, {})["mislabeled"] = (1.0 - float(label_issues.self_confidence[i]), None, detail)
    for i in np.flatnonzero(outlier_z > outlier_threshold).tolist():
        issues.setdefault(i, {})["outlier"] = (float(outlier_z[i]), None, f"k-NN distance z = {outlier_z[i]:.2f}")
    findings = []
    for i, found in issues.items():
        kinds = [k for k in KINDS if k in found]
        score, other, detail = found[kinds[0]]
        extra = [found[k][2] for k in kinds[1:] if k == "mislabeled"]
        findings.append(Finding(i, kinds[0], score, int(probs[i].argmax()), float(probs[i, labels[i]]), other,
                                "; ".join([detail, *extra]), kinds[1:]))
    findings.sort(key=lambda f: (KINDS.index(f.kind), -f.score, f.index))
    return findings


def count_by_kind(findings: Sequence[Finding]) -> dict[str, int]:
    """How many images have each kind of issue (an image with two issues counts in both)."""
    counts = dict.fromkeys(KINDS, 0)
    for f in findings:
        for kind in [f.kind, *f.also]:
            counts[kind] += 1
    return counts
