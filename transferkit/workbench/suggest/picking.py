"""Which unlabelled images a label would help most: uncertainty weighted by novelty, picked greedily.

Each pool image has the model's margin (top probability minus the second: small where the model
hesitates between two classes) and its feature-space distance (cosine) to the nearest labelled
image. The first pick maximises ``(1 - margin) * distance / median distance``; after each pick
the distances are updated with the picked image counted as labelled (k-center greedy), so a batch
does not spend its labels on near-copies of one confusing image. With ``uncertainty = 0`` it is
plain k-center (coreset); with every distance equal it is margin sampling.

Pure numpy on features and probabilities: ``transferkit suggest`` and
``benchmarks/active_labels.py`` call the same ``pick``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Picked:
    """Pool indices in the order picked, with each one's score, margin and novelty at its pick."""

    order: np.ndarray
    scores: np.ndarray
    margins: np.ndarray
    novelty: np.ndarray


def margins(probs: np.ndarray) -> np.ndarray:
    """Top-1 probability minus top-2 per row (1 for a single class)."""
    if probs.shape[1] < 2:
        return np.ones(len(probs))
    top2 = np.sort(probs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def _unit(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _nearest_distance(pool: np.ndarray, others: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Cosine distance of each pool row to its nearest row of ``others`` (unit rows)."""
    if len(others) == 0:
        return np.ones(len(pool))
    out = np.empty(len(pool))
    for start in range(0, len(pool), chunk):
        out[start:start + chunk] = 1.0 - (pool[start:start + chunk] @ others.T).max(axis=1)
    return np.clip(out, 0.0, 2.0)


def pick(
    pool_features: np.ndarray, pool_probs: np.ndarray, labelled_features: np.ndarray, count: int, *, uncertainty: float = 1.0,
) -> Picked:
    """``count`` pool images (all of them when fewer), most useful first."""
    if count < 1:
        raise ValueError(f"count {count}: give 1 or more")
    pool = _unit(pool_features)
    distance = _nearest_distance(pool, _unit(labelled_features))
    margin = margins(pool_probs)
    need = 1.0 - uncertainty * margin  # in [1 - uncertainty, 1]
    count = min(count, len(pool))
    order, scores, novelty = [], [], []
    scale = float(np.median(distance)) or 1.0
    taken = np.zeros(len(pool), dtype=bool)
    for _ in range(count):
        score = np.where(taken, -np.inf, need * distance / scale)
        best = int(np.argmax(score))
        order.append(best)
        scores.append(float(score[best]))
        novelty.append(float(distance[best]))
        taken[best] = True
        distance = np.minimum(distance, np.clip(1.0 - pool @ pool[best], 0.0, 2.0))
    order_arr = np.asarray(order, dtype=np.int64)
    return Picked(order_arr, np.asarray(scores), margin[order_arr], np.asarray(novelty))
