"""A multi-label run's figures: each label's precision-recall curve (with its average precision
and the point its threshold picks), and the loss and validation mAP per fine-tuning epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..evaluation.multilabel_metrics import average_precision, ranked_counts
from ..evaluation.plots import _save, plot_curves, plt

SHOWN = 20  # labels drawn: the first ones by vocabulary order (a wider set reads as noise)


def plot_pr_curves(probs: np.ndarray, targets: np.ndarray, labels: Sequence[str], thresholds: Sequence[float], path: Any,
                   split: str = "test") -> None:
    """Precision against recall for each label (up to ``SHOWN``), a dot at its threshold."""
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    ap = average_precision(probs, targets)
    for j, label in enumerate(labels[:SHOWN]):
        y = targets[:, j].astype(bool)
        if not y.any():
            continue
        values, tps, fps = ranked_counts(probs[:, j].astype(np.float64), y)
        precision, recall = tps / (tps + fps), tps / y.sum()
        line = ax.plot(np.r_[0.0, recall], np.r_[1.0, precision], drawstyle="steps-post", lw=1.3,
                       label=f"{label} (AP {ap[j]:.3f})")[0]
        at = np.flatnonzero(values >= thresholds[j])
        if len(at):
            ax.plot(recall[at[-1]], precision[at[-1]], "o", color=line.get_color(), ms=5)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.03)
    more = f"; {len(labels) - SHOWN} more labels not drawn" if len(labels) > SHOWN else ""
    ax.set_title(f"precision-recall per label on {split} (dot: the label's threshold){more}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2 if len(labels) > 8 else 1)
    fig.tight_layout()
    _save(fig, Path(path) if isinstance(path, str) else path)
    plt.close(fig)


def plot_multilabel_curves(records: Sequence[dict[str, Any]], path: Any) -> None:
    """Training and validation loss, and validation macro mAP: the probe, then each fine-tuning epoch."""
    plot_curves(records, path, score=(None, "val_macro_map", "macro mAP"), loss="binary cross-entropy")
