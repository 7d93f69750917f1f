"""Figures of a run: loss and accuracy curves across both phases, the confusion matrix, the
reliability diagram; written into a run folder with their sha256 recorded, as its other files are."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ...recipe import FINETUNE
from ..rundir.artifacts import display_name, write_verified  # noqa: E402


def _save(fig: Any, path: Any) -> None:
    """A figure into a file object (the report's), or into a file written atomically with its
    sha256 recorded in ``checksums.json`` like every other file of a run."""
    if not isinstance(path, (str, Path)):
        fig.savefig(path, dpi=110)
        return
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_verified(Path(path), buffer.getvalue())


def plot_curves(records: Sequence[dict[str, Any]], path: Path, score: tuple[str | None, str, str] = ("train_acc", "val_top1", "accuracy"),
                loss: str = "loss") -> None:
    """Training / validation loss and a score per epoch (``score``: its training key or None, its
    validation key, its title: accuracy by default, a multi-label run's macro mAP); a line marks the
    phase change."""
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not epochs:
        return
    train_key, val_key, score_title = score
    x = np.arange(1, len(epochs) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(x, [r["train_loss"] for r in epochs], "o-", label="train")
    if any("val_loss" in r for r in epochs):
        ax_loss.plot(x, [r.get("val_loss", np.nan) for r in epochs], "s-", label="val")
    if train_key is not None:
        ax_acc.plot(x, [r[train_key] for r in epochs], "o-", label="train")
    if any(r.get(val_key) is not None for r in epochs):
        ax_acc.plot(x, [np.nan if r.get(val_key) is None else r[val_key] for r in epochs], "s-", label="val")
    switch = next((i for i, r in enumerate(epochs) if r["phase"] == FINETUNE), None)
    for ax, title in ((ax_loss, loss), (ax_acc, score_title)):
        if switch:
            ax.axvline(switch + 0.5, color="grey", linestyle="--")
            ax.text(switch + 0.5, ax.get_ylim()[1], " finetune", va="top", fontsize=8, color="grey")
        ax.set_xlabel("epoch (extract, then finetune)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "test") -> None:
    """Row-normalised confusion matrix, with counts in the cells when there is room."""
    cm = np.asarray(matrix, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    classes = [display_name(c) for c in classes]
    n = len(classes)
    side = min(4 + 0.45 * n, 24)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90 if n > 6 else 0, fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({title}, row-normalised)")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_reliability(before: Any, after: Any, path: Any, split: str, temperature: float) -> None:
    """Reliability diagrams (``calibration.ReliabilityBins``) side by side: without and with the
    temperature. Bars: the accuracy of each bin of top probability; dots: its mean confidence;
    the diagonal is perfect calibration."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    for ax, bins, title in ((axes[0], before, "uncalibrated (T = 1)"), (axes[1], after, f"calibrated (T = {temperature:.3g})")):
        width = bins.edges[1] - bins.edges[0]
        centres = bins.edges[:-1] + width / 2
        filled = bins.count > 0
        ax.bar(centres[filled], bins.accuracy[filled], width=width * 0.9, color="#4a7ab5", alpha=0.8, label="accuracy")
        ax.plot(bins.confidence[filled], bins.confidence[filled], "o", color="#c03030", markersize=4, label="mean confidence")
        for x, acc, conf in zip(centres[filled], bins.accuracy[filled], bins.confidence[filled]):
            ax.plot([x, x], [acc, conf], color="#c03030", linewidth=1, alpha=0.6)
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        for x, n in zip(centres[filled], bins.count[filled]):
            ax.text(x, 0.01, str(int(n)), ha="center", va="bottom", fontsize=6, color="#111", rotation=90)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top probability (confidence)")
        ax.set_title(f"{title}: ECE {bins.ece:.4f}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"accuracy ({split}; image count in each bar)")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_tradeoff(rejected: np.ndarray, accuracy: np.ndarray, path: Any, split: str,
                  marker: tuple[float, float, str] | None = None) -> None:
    """Accuracy on the accepted images against the fraction rejected (lowest top probability
    first); ``marker``: (fraction rejected, accuracy, label) of the run's threshold."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(rejected, accuracy, "-", color="#4a7ab5", linewidth=1.5)
    if marker is not None:
        ax.plot([marker[0]], [marker[1]], "o", color="#c03030", label=marker[2])
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"fraction of {split} images rejected (lowest calibrated top probability first)")
    ax.set_ylabel("accuracy on the accepted images")
    ax.set_title("rejection trade-off")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
