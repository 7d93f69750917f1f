"""Class imbalance: ``train.class_weights = "balanced"`` weighs each class's loss by
``n_samples / (n_classes * n_c)`` over the training split (scikit-learn's
``compute_class_weight("balanced")``), in both phases, the phase-1 feature cache included.

How the weights enter the loss (soft targets from label smoothing or Mixup/CutMix included) is
``transferkit.engine.training.loop.soft_cross_entropy``: a sample weighs ``sum_c target_c * w_c``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight

from ...errors import DataError
from ...recipe import Recipe


def balanced_class_weights(targets: Sequence[int], classes: Sequence[str]) -> np.ndarray:
    """``compute_class_weight("balanced")`` over integer ``targets``, one weight per class name;
    a class without training images is one line naming it."""
    labels = np.asarray(targets, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        raise DataError(
            f"train.class_weights = \"balanced\": class {empty[0]!r} has no training images, so it has no weight;"
            " add images of it, remove its folder, or set train.class_weights = \"none\""
        )
    return compute_class_weight("balanced", classes=np.arange(len(classes)), y=labels).astype(np.float64)


def recipe_class_weights(recipe: Recipe, targets: Sequence[int], classes: Sequence[str]) -> np.ndarray | None:
    """The recipe's per-class loss weights over the training targets, or None (unweighted)."""
    if recipe.train.class_weights == "none":
        return None
    return balanced_class_weights(targets, classes)


def weights_tensor(weights: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    return None if weights is None else torch.as_tensor(weights, dtype=torch.float32, device=device)


def describe_class_weights(weights: np.ndarray, classes: Sequence[str], targets: Sequence[int]) -> str:
    """One log line: each class's weight and training-image count, heaviest first."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=len(classes))
    order = np.argsort(-weights, kind="stable")
    shown = ", ".join(f"{classes[i]} {weights[i]:.3f} ({counts[i]})" for i in order[:12])
    more = f", ... ({len(classes) - 12} more)" if len(classes) > 12 else ""
    return f"class weights (balanced; weight (train images)): {shown}{more}"
