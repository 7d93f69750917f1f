"""Figures of a run: loss and accuracy curves across both phases, and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .artifacts import display_name  # noqa: E402


def plot_curves(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Training loss / validation loss and accuracies per epoch; a line marks the phase change."""
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not epochs:
        return
    x = np.arange(1, len(epochs) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(x, [r["train_loss"] for r in epochs], "o-", label="train")
    if any("val_loss" in r for r in epochs):
        ax_loss.plot(x, [r.get("val_loss", np.nan) for r in epochs], "s-", label="val")
    ax_acc.plot(x, [r["train_acc"] for r in epochs], "o-", label="train")
    if any("val_top1" in r for r in epochs):
        ax_acc.plot(x, [r.get("val_top1", np.nan) for r in epochs], "s-", label="val")
    switch = next((i for i, r in enumerate(epochs) if r["phase"] == "finetune"), None)
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        if switch:
            ax.axvline(switch + 0.5, color="grey", linestyle="--")
            ax.text(switch + 0.5, ax.get_ylim()[1], " finetune", va="top", fontsize=8, color="grey")
        ax.set_xlabel("epoch (extract, then finetune)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
