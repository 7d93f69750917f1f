"""Which unlabelled images a label would help most: uncertainty weighted by novelty, picked greedily.

Each pool image has the model's margin (top probability minus the second: small where the model
hesitates between two classes) and its feature-space distance (cosine) to the nearest labelled
image. The first pick maximises ``(1 - margin) * distance / median distance``; after each pick
the distances are updated with the picked image counted as labelled (k-center greedy), so a batch
does not spend its labels on near-copies of one confusing image. With ``uncertainty = 0`` it is
plain k-center (coreset); with every distance equal it is margin sampling.

Chosen on flowers12 and a 10-class product-photo folder (5 labels per class to start, 4 rounds
of 2 more per class, the phase-1 probe as the model; mean test top-1 over the rounds): centred
features and a linear uncertainty weight (0.9401 / 0.7619) against random labelling (0.9208 /
0.7621), margin alone (0.9430 / 0.7503), k-center alone (0.9289 on flowers12), squared or fourth
power weights (0.9427 / 0.7608, 0.9417 / 0.7518), and margin's 3N or 5N candidates then k-center
(0.9378, 0.9372 on flowers12). Measured on other folders: ``benchmarks/SUGGEST.md``.

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
    # cosine about the features' mean: pooled post-ReLU features all point into one orthant, where
    # raw cosines crowd near 1 (centred: flowers12 0.9401 against 0.9380 raw, mean over rounds)
    centre = np.concatenate([pool_features, labelled_features]).mean(axis=0)
    pool = _unit(pool_features - centre)
    distance = _nearest_distance(pool, _unit(labelled_features - centre))
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
