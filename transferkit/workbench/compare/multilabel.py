"""``transferkit compare RUN_A RUN_B`` for two multi-label runs (``task = "multilabel"``): both
predict RUN_A's evaluation images (its test split as ``splits.csv`` recorded it, else its val
split, or ``--data CSV``), and the comparison is in their headline figure, macro mean average
precision, with a paired bootstrap interval for the difference.

McNemar's test of the single-label compare counts images one run gets right and the other wrong;
a multi-label answer is a ranking per label, not right or wrong, so the images are resampled
instead (Efron and Tibshirani 1993): ``RESAMPLES`` draws of N images with replacement (seeded, so
the interval is the same every time), both runs' macro mAP recomputed on each draw, and the 2.5th
and 97.5th percentiles of B - A are the 95% interval. Both runs are scored on the same draws, so
what the images share cancels out. A label without a positive image in a draw has no average
precision there and is left out of that draw's mean, as the macro mean leaves it out of the
whole split (``engine.evaluation.multilabel_metrics``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...engine.evaluation.multilabel_metrics import mean_average_precision
from ...engine.rundir.model_files import read_manifest
from ...errors import DataError, printable
from ...evaluate_multilabel import multilabel_predictions, multilabel_rows

RESAMPLES, SEED = 1000, 0
NOISE = 1e-12  # differences of mAP this small are float rounding (the same ranking summed in another order): 0
_CHUNK = 100  # resamples scored at once: [chunk, images] arrays per label


@dataclass
class MultiLabelComparison:
    """Both runs' probabilities on one image set (columns in RUN_A's label order), and the
    bootstrap differences of their macro mAP."""

    run_a: Path
    run_b: Path
    where: str
    labels: list[str]
    targets: np.ndarray  # [N, L] multi-hot
    probs_a: np.ndarray
    probs_b: np.ndarray
    diffs: np.ndarray  # B - A macro mAP on each resample (those with a positive of some label)
    seed: int = SEED
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def scores_a(self) -> dict[str, Any]:
        return mean_average_precision(self.probs_a, self.targets)

    @property
    def scores_b(self) -> dict[str, Any]:
        return mean_average_precision(self.probs_b, self.targets)

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% bootstrap interval of B - A's macro mAP (percentiles of the resamples)."""
        low, high = np.percentile(self.diffs, [2.5, 97.5])
        return float(low), float(high)

    def per_label(self) -> list[dict[str, Any]]:
        """Per label with a positive: positives, each run's AP and B - A; largest differences first."""
        a, b = self.scores_a["per_label"], self.scores_b["per_label"]
        rows = [{"label": name, "positives": int(self.targets[:, j].sum()), "a": float(a[j]), "b": float(b[j]),
                 "diff": _exact(float(b[j] - a[j]))} for j, name in enumerate(self.labels) if not np.isnan(a[j])]
        return sorted(rows, key=lambda r: (-abs(r["diff"]), r["label"]))


def compare_multilabel_runs(run_a: str | Path, run_b: str | Path, data: str | Path | None = None, split: str | None = None,
                            *, resamples: int = RESAMPLES, seed: int = SEED) -> MultiLabelComparison:
    """Predict with both runs on RUN_A's evaluation images and bootstrap their macro mAP."""
    labels_a, labels_b = (read_manifest(Path(run))["classes"] for run in (run_a, run_b))
    if sorted(labels_a) != sorted(labels_b):
        only_a, only_b = sorted(set(labels_a) - set(labels_b)), sorted(set(labels_b) - set(labels_a))
        raise DataError(f"compare: the runs have different labels (only in {run_a}: {only_a[:5]}; only in {run_b}: {only_b[:5]});"
                        " compare runs trained on the same labels")
    rows = multilabel_rows(run_a, data, split)
    a = multilabel_predictions(run_a, rows=rows)
    b = multilabel_predictions(run_b, rows=rows)
    common = np.intersect1d(a.kept, b.kept)  # the images both could read (the same, unless a file changed between)
    in_a, in_b = np.isin(a.kept, common), np.isin(b.kept, common)
    to_a = [b.labels.index(name) for name in a.labels]  # B's columns in A's label order
    probs_a, probs_b, targets = a.probs[in_a], b.probs[in_b][:, to_a], a.targets[in_a]
    if not targets.any():
        raise DataError(f"compare: no image of {a.where} has a label, so there is no average precision to compare;"
                        " compare on labelled images (--data CSV)")
    skipped = list(dict.fromkeys([*a.skipped, *b.skipped]))
    diffs = paired_bootstrap(probs_a, probs_b, targets, resamples, seed)
    return MultiLabelComparison(Path(run_a), Path(run_b), a.where, list(a.labels), targets, probs_a, probs_b, diffs, seed, skipped)


def paired_bootstrap(probs_a: np.ndarray, probs_b: np.ndarray, targets: np.ndarray, resamples: int = RESAMPLES,
                     seed: int = SEED) -> np.ndarray:
    """B - A macro mAP on ``resamples`` draws of the images with replacement (the same draws for
    both runs); draws in which no label has a positive are left out."""
    rng = np.random.default_rng(seed)
    n = len(targets)
    diffs = []
    for start in range(0, resamples, _CHUNK):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(_CHUNK, resamples - start)).astype(np.float64)
        diffs.append(macro_map_weighted(probs_b, targets, counts) - macro_map_weighted(probs_a, targets, counts))
    out = np.concatenate(diffs) if diffs else np.zeros(0)
    out = out[np.isfinite(out)]
    out[np.abs(out) < NOISE] = 0.0
    return out


def _exact(diff: float) -> float:
    return 0.0 if abs(diff) < NOISE else diff


def macro_map_weighted(probs: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[B]`` macro mAP for each row of ``weights`` (``[B, N]``: how often each image is drawn),
    as ``mean_average_precision`` computes it on the images repeated that often; NaN for a row
    in which no label has a positive."""
    per_label = np.stack([weighted_average_precision(probs[:, j], targets[:, j].astype(bool), weights)
                          for j in range(targets.shape[1])], axis=1)
    present = ~np.isnan(per_label)
    total = np.where(present, per_label, 0.0).sum(axis=1)
    count = present.sum(axis=1)
    return np.divide(total, count, out=np.full(len(weights), np.nan), where=count > 0)


def weighted_average_precision(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[B]`` average precision of one label under each row of ``weights``: the images ranked by
    score, tied scores as one step, each step's precision weighted by the recall it adds (the
    definition of ``multilabel_metrics.average_precision``, with images counted ``weights`` times)."""
    order = np.argsort(-scores, kind="mergesort")
    s, t, w = scores[order], targets[order], weights[:, order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last image of each run of equal scores
    tps = np.cumsum(w * t, axis=1)[:, ends]
    flagged = np.cumsum(w, axis=1)[:, ends]
    precision = np.divide(tps, flagged, out=np.zeros_like(tps), where=flagged > 0)
    positives = tps[:, -1]
    gained = np.diff(tps, prepend=0.0, axis=1)
    return np.divide((gained * precision).sum(axis=1), positives, out=np.full(len(w), np.nan), where=positives > 0)


def format_multilabel_comparison(c: MultiLabelComparison, top: int = 10) -> str:
    n = len(c.targets)
    a, b = c.scores_a, c.scores_b
    low, high = c.interval
    verdict = "a real difference at the 0.05 level" if low > 0 or high < 0 else "no significant difference at the 0.05 level"
    lines = [
        f"A = {c.run_a}",
        f"B = {c.run_b}",
        f"on {c.where}, {len(c.labels)} labels (multi-label):",
        f"  macro mAP  A {a['macro']:.4f}   B {b['macro']:.4f}   B - A {_exact(b['macro'] - a['macro']):+.4f}",
        f"  micro mAP  A {a['micro']:.4f}   B {b['micro']:.4f}   B - A {_exact(b['micro'] - a['micro']):+.4f}",
        f"  95% bootstrap interval of the macro mAP difference B - A: {low:+.4f} to {high:+.4f} ({len(c.diffs)} resamples of"
        f" the {n} images, seed {c.seed}; {verdict})",
    ]
    rows = c.per_label()
    differing = [r for r in rows if r["diff"] != 0]
    lines.append(f"per-label average precision, largest differences first ({len(differing)} of {len(rows)} labels differ):")
    width = max(len(r["label"]) for r in rows)
    for r in rows[:top]:
        lines.append(f"  {r['label']:<{width}}  A {r['a']:.3f}  B {r['b']:.3f}  B - A {r['diff']:+.3f}  ({r['positives']} positives)")
    if len(rows) > top:
        lines.append(f"  ... and {len(rows) - top} more labels (--top N shows more)")
    absent = [c.labels[j] for j in a["without_positives"]]
    if absent:
        lines.append(f"without a positive image here, left out of macro mAP: {', '.join(absent)}")
    if c.skipped:
        shown = "; ".join(f"{printable(f)}: {printable(r)}" for f, r in c.skipped[:5]) + ("; ..." if len(c.skipped) > 5 else "")
        lines.append(f"skipped {len(c.skipped)} image(s) that could not be read (not compared): {shown}")
    return "\n".join(lines)
