"""``transferkit compare RUN_A RUN_B``: two finished runs on the same images (RUN_A's test split
by default, or ``--data``): their accuracy and macro-F1, how often each is right where the other
is wrong, McNemar's exact test on those disagreements, and the per-class accuracy differences.

McNemar's test (McNemar 1947; Dietterich 1998 recommends it for comparing two classifiers on one
test set) looks only at the images where exactly one run is right: b (only A right) and c (only B
right). Under "equally good", each such image is a fair coin, so p = P(|Binomial(b + c, 1/2) -
(b + c)/2| >= |b - (b + c)/2|), computed exactly.

Two multi-label runs are compared by their macro mAP instead (``multilabel``); a single-label run
and a multi-label one are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binom
from sklearn.metrics import f1_score

from ...engine.rundir.model_files import MANIFEST_FILE
from ...errors import DataError, TransferkitError, printable
from ...evaluate_multilabel import is_multilabel_run
from ...evaluate_run import predictions
from ...inference import load
from .multilabel import MultiLabelComparison, compare_multilabel_runs, format_multilabel_comparison


@dataclass
class Comparison:
    """Both runs' predictions on one image set, and what they say about each other."""

    run_a: Path
    run_b: Path
    where: str
    classes: list[str]
    targets: np.ndarray
    preds_a: np.ndarray
    preds_b: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)  # images that could not be read (file, reason)

    @property
    def right_a(self) -> np.ndarray:
        return self.preds_a == self.targets

    @property
    def right_b(self) -> np.ndarray:
        return self.preds_b == self.targets

    @property
    def only_a(self) -> int:
        return int((self.right_a & ~self.right_b).sum())

    @property
    def only_b(self) -> int:
        return int((~self.right_a & self.right_b).sum())

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.only_a, self.only_b)

    def per_class(self) -> list[dict[str, Any]]:
        """Per class present: images, each run's accuracy and B - A; largest differences first."""
        rows = []
        for index, name in enumerate(self.classes):
            mask = self.targets == index
            if mask.any():
                a, b = float(self.right_a[mask].mean()), float(self.right_b[mask].mean())
                rows.append({"class": name, "images": int(mask.sum()), "a": a, "b": b, "diff": b - a})
        return sorted(rows, key=lambda r: (-abs(r["diff"]), r["class"]))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (1.0 when there are none)."""
    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))


def compare_runs(run_a: str | Path, run_b: str | Path, data: str | Path | None = None,
                 split: str | None = None) -> Comparison | MultiLabelComparison:
    """Predict with both runs on RUN_A's evaluation images (``transferkit.evaluate``'s choice);
    two multi-label runs: ``multilabel.compare_multilabel_runs``."""
    multilabel = [is_multilabel_run(run) for run in (run_a, run_b)]
    if all(multilabel):
        return compare_multilabel_runs(run_a, run_b, data, split)
    if any(multilabel):
        ours, other = (run_a, run_b) if multilabel[0] else (run_b, run_a)
        if (Path(other) / MANIFEST_FILE).is_file():  # else: not a finished run, which load() says below
            raise TransferkitError(f"compare: {ours} is a multi-label run and {other} a single-label one; compare two runs of the"
                                   " same task (multi-label runs by their mAP, single-label runs by their accuracy)")
    model_a, model_b = load(run_a), load(run_b)
    if sorted(model_a.classes) != sorted(model_b.classes):
        only_a = sorted(set(model_a.classes) - set(model_b.classes))
        only_b = sorted(set(model_b.classes) - set(model_a.classes))
        raise DataError(f"compare: the runs have different classes (only in {run_a}: {only_a[:5]}; only in {run_b}: {only_b[:5]});"
                        " compare runs trained on the same classes")
    pred_a, chosen = predictions(run_a, data, split=split, model=model_a)
    pred_b = model_b.predictions(chosen.images)
    to_a = np.array([model_a.classes.index(c) for c in model_b.classes])  # B's class order -> A's
    return Comparison(Path(run_a), Path(run_b), chosen.where, list(model_a.classes), pred_a.targets, pred_a.preds,
                      to_a[pred_b.preds] if len(pred_b.preds) else pred_b.preds, list(pred_a.skipped))


def format_comparison(c: Comparison | MultiLabelComparison, top: int = 10) -> str:
    if isinstance(c, MultiLabelComparison):
        return format_multilabel_comparison(c, top)
    n = len(c.targets)
    if n == 0:
        return "no images to compare on"
    acc_a, acc_b = float(c.right_a.mean()), float(c.right_b.mean())
    lines = [
        f"A = {c.run_a}",
        f"B = {c.run_b}",
        f"on {c.where}:",
        f"  top-1     A {acc_a:.4f}   B {acc_b:.4f}   B - A {acc_b - acc_a:+.4f}",
        f"  macro-F1  A {_macro_f1(c.targets, c.preds_a, c.classes):.4f}   B {_macro_f1(c.targets, c.preds_b, c.classes):.4f}",
        f"  both right {int((c.right_a & c.right_b).sum())}, only A right {c.only_a}, only B right {c.only_b},"
        f" both wrong {int((~c.right_a & ~c.right_b).sum())}",
    ]
    p = c.p_value
    verdict = "a real difference at the 0.05 level" if p < 0.05 else "no significant difference at the 0.05 level"
    lines.append(f"  McNemar exact test on the {c.only_a + c.only_b} disagreements: p = {p:.4g} ({verdict})")
    rows = c.per_class()
    differing = [r for r in rows if r["diff"] != 0]
    lines.append(f"per-class accuracy, largest differences first ({len(differing)} of {len(rows)} classes differ):")
    width = max(len(r["class"]) for r in rows)
    for r in rows[:top]:
        lines.append(f"  {r['class']:<{width}}  A {r['a']:.3f}  B {r['b']:.3f}  B - A {r['diff']:+.3f}  ({r['images']} images)")
    if len(rows) > top:
        lines.append(f"  ... and {len(rows) - top} more classes (--top N shows more)")
    if c.skipped:
        shown = "; ".join(f"{printable(f)}: {printable(r)}" for f, r in c.skipped[:5]) + ("; ..." if len(c.skipped) > 5 else "")
        lines.append(f"skipped {len(c.skipped)} image(s) that could not be read (not compared): {shown}")
    return "\n".join(lines)


def _macro_f1(targets: np.ndarray, preds: np.ndarray, classes: list[str]) -> float:
    present = np.unique(targets)
    return float(f1_score(targets, preds, labels=present, average="macro", zero_division=0))
