"""Near-duplicates and outliers for ``transferkit audit``, from frozen backbone features and tiny
pixel signatures. Plain numpy, no CLI: a rejection rule ("unknown") can reuse the k-NN scores.

Defaults, measured on flowers12 (EfficientNet-Lite0 at 192 px; 960 photos, which already hold
about 60 pairs of the same photograph, cropped, zoomed or mirrored, 25 of them across train and
test):

- **features**: cosine of L2-normalised *power-normalised* features (signed square root, as in
  Perronnin et al. 2010), which lifted re-encoded copies more than distinct photos. At
  >= 0.95 every pair looked at was the same photograph; between 0.93 and 0.945 distinct photos of
  the same species begin. A JPEG at quality 70 scores >= 0.98, a 2x upscale >= 0.99, but a copy
  shrunk to 200 px at quality 70 only 0.93, a mirror image 0.87: features alone miss them.
- **pixels**: the correlation of 16x16 greyscale thumbnails (mean removed; the better of the image
  and its mirror). Re-encoded, resized (down to 112 px), brightened or mirrored copies score
  >= 0.994; distinct photos at most 0.936; a pair at >= 0.97 counts. Crops need the features.
- **exact**: the same bytes (SHA-1 of the file).
- **outliers**: 1 - the mean cosine (power-normalised features) to the 10 nearest training
  images, near-duplicates excluded, as a robust z-score against the training images (median,
  1.4826 x MAD). Nine planted non-flowers (a street scene and its crops, digits, noise, grey, and
  one flower of another species) ranked in the top 11 of 984 and 8 of them scored z > 2.5 (the
  other flower 2.0), where no flowers12 image did (its highest: 2.2).
  Plain features ranked them the same but spread them less (z 1.6-2.6); a class's own neighbours
  would mix outliers with mislabeled images, which the label audit covers.
  An image must also stand out within its own class (``class_relative_z`` > 2, classes of 5 or
  more): a class unlike the others is not a set of outliers. Measured by adding 8 images of one
  class of another folder as a new class, and 3 images of it with random labels as outliers, to
  4-30 images a class of five folders (20 cases, 8 seeds each): the images of the new class called
  outliers fell from 1.24 a case to 0.02 (7.8 of 8 with flowers12 at 30 a class, the first audit's
  "8 ordinary bluebells"), other images called outliers from 0.42 to 0.23, and the share of the
  planted outliers found went from 0.35 to 0.33.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

FEATURE_SIMILARITY = 0.95
PIXEL_SIMILARITY = 0.97
SIGNATURE_SIDE = 16
OUTLIER_NEIGHBOURS = 10
OUTLIER_Z = 2.5
OUTLIER_CLASS_Z = 2.0  # and at least this far out within its own class
_BLOCK = 1024


def power_normalised(features: np.ndarray) -> np.ndarray:
    """Signed square root, then unit length: rows whose dot products are cosine similarities."""
    signed = np.sign(features) * np.sqrt(np.abs(features))
    norms = np.linalg.norm(signed, axis=1, keepdims=True)
    return (signed / np.maximum(norms, 1e-12)).astype(np.float32)


def pixel_signature(image: np.ndarray, side: int = SIGNATURE_SIDE) -> np.ndarray:
    """``[2, side * side]``: the image and its mirror as side x side greyscale, mean removed, unit
    length (all zeros for a flat image)."""
    grey = np.asarray(Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("L").resize((side, side), Image.BILINEAR),
                      dtype=np.float32)
    out = []
    for view in (grey, grey[:, ::-1]):
        centred = (view - view.mean()).ravel()
        norm = float(np.linalg.norm(centred))
        out.append(centred / norm if norm > 1e-6 else np.zeros_like(centred))
    return np.stack(out)


def file_digest(path: str | Path) -> str:
    """SHA-1 of a file's bytes ("" when it cannot be read)."""
    try:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


@dataclass
class DuplicatePair:
    """Two images (``first`` < ``second``) that look like the same photograph."""

    first: int
    second: int
    feature_similarity: float
    pixel_similarity: float
    same_bytes: bool

    @property
    def score(self) -> float:
        return 1.0 if self.same_bytes else max(self.feature_similarity, self.pixel_similarity)

    @property
    def evidence(self) -> str:
        if self.same_bytes:
            return "same bytes"
        return "pixels" if self.pixel_similarity >= PIXEL_SIMILARITY else "features"


def near_duplicates(
    features: np.ndarray,
    signatures: np.ndarray | None = None,
    digests: list[str] | None = None,
    *,
    threshold: float = FEATURE_SIMILARITY,
    pixel_threshold: float = PIXEL_SIMILARITY,
) -> list[DuplicatePair]:
    """Every pair whose power-normalised feature cosine reaches ``threshold``, whose pixel
    signatures (``[N, 2, D]``) correlate at ``pixel_threshold`` or more, or whose files have the
    same digest; computed in blocks, so memory stays O(N x 1024)."""
    n = len(features)
    unit = power_normalised(features)
    flat = signatures[:, 0] if signatures is not None else None
    mirrored = signatures[:, 1] if signatures is not None else None
    by_digest: dict[str, list[int]] = {}
    for i, digest in enumerate(digests or []):
        if digest:
            by_digest.setdefault(digest, []).append(i)
    same = {(a, b) for group in by_digest.values() for j, a in enumerate(group) for b in group[j + 1 :]}
    pairs: list[DuplicatePair] = []
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        feature_sim = unit[start:stop] @ unit.T
        pixel_sim = np.zeros_like(feature_sim)
        if flat is not None:
            pixel_sim = np.maximum(flat[start:stop] @ flat.T, flat[start:stop] @ mirrored.T)
        hit = (feature_sim >= threshold) | (pixel_sim >= pixel_threshold)
        rows, cols = np.nonzero(hit)
        for r, col in zip(rows.tolist(), cols.tolist()):
            i = start + r
            if col > i:
                pairs.append(DuplicatePair(i, col, float(feature_sim[r, col]), float(pixel_sim[r, col]), (i, col) in same))
                same.discard((i, col))
    for i, j in sorted(same):  # same bytes but decoded differently enough to miss both thresholds: still the same file
        sim = float(unit[i] @ unit[j])
        pixel = float(max(flat[i] @ flat[j], flat[i] @ mirrored[j])) if flat is not None else 0.0
        pairs.append(DuplicatePair(i, j, sim, pixel, True))
    return sorted(pairs, key=lambda p: (-p.score, p.first, p.second))


def duplicate_groups(pairs: list[DuplicatePair], n: int) -> list[list[int]]:
    """Connected groups (union-find) of images joined by pairs, each sorted, groups by first member."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for p in pairs:
        a, b = root(p.first), root(p.second)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def outlier_scores(
    features: np.ndarray, reference: np.ndarray, *, k: int = OUTLIER_NEIGHBOURS, exclude_above: float = FEATURE_SIMILARITY
) -> np.ndarray:
    """1 - mean cosine similarity (power-normalised features) of each image to its ``k`` nearest
    reference images (boolean mask ``reference``), leaving out itself and its near-duplicates."""
    unit = power_normalised(features)
    ref_index = np.flatnonzero(reference)
    ref = unit[ref_index]
    k = max(1, min(k, len(ref_index) - 1))
    scores = np.zeros(len(unit))
    for start in range(0, len(unit), _BLOCK):
        sim = unit[start : start + _BLOCK] @ ref.T
        sim[sim >= exclude_above] = -np.inf
        own = np.flatnonzero((ref_index >= start) & (ref_index < start + _BLOCK))
        sim[ref_index[own] - start, own] = -np.inf
        top = -np.partition(-sim, k - 1, axis=1)[:, :k] if k < sim.shape[1] else sim
        finite = np.isfinite(top)
        total = np.where(finite, top, 0.0).sum(axis=1)
        count = finite.sum(axis=1)
        # an image with nothing but its own duplicates to compare with is not called an outlier
        scores[start : start + len(sim)] = np.where(count > 0, 1.0 - total / np.maximum(count, 1), 0.0)
    return scores


def robust_z(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(score - median) / (1.4826 x MAD), both over the reference images: a z-score that the
    outliers themselves barely move."""
    ref = scores[reference]
    median = float(np.median(ref))
    mad = 1.4826 * float(np.median(np.abs(ref - median)))
    return (scores - median) / max(mad, 1e-12)


def class_relative_z(scores: np.ndarray, labels: np.ndarray, reference: np.ndarray, min_images: int = 5) -> np.ndarray:
    """How far each image stands out within its own class: its score less the median of its
    class's reference images, over the larger of their MAD and that of all reference images (a
    class of a few close images does not make a hair's difference look like a gap). Infinity
    where the class has fewer than ``min_images`` reference images: too few to say what is usual."""
    labels = np.asarray(labels)
    spread = float(np.median(np.abs(scores[reference] - np.median(scores[reference]))))
    z = np.full(len(scores), np.inf)
    for label in np.unique(labels):
        members = labels == label
        own = scores[members & reference]
        if len(own) >= min_images:
            median = float(np.median(own))
            mad = max(float(np.median(np.abs(own - median))), spread)
            z[members] = (scores[members] - median) / max(1.4826 * mad, 1e-12)
    return z
