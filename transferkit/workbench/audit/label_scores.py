"""Label scores for ``transferkit audit``: out-of-fold class probabilities from logistic probes on
frozen backbone features, and the confident-learning ranking of likely mislabeled images
(Northcutt, Jiang and Chuang, "Confident Learning", JAIR 2021).

Plain numpy and scikit-learn, no CLI: calibration or an "unknown" answer can reuse them.

Measured on flowers12 (EfficientNet-Lite0 features at 192 px, 720 training images, 5% of the
labels moved to a random wrong class, 8 seeds): the self-confidence ranking (lowest probability
of the given label first) put 0.917 of the moved images in its top N (N = the number moved) with
C = 0.01 on standardised features; C = 0.001 / 0.003 / 0.03 / 0.1 / 1 gave 0.882 / 0.920 /
0.910 / 0.899 / 0.889; ranking by the margin (given label minus the best other) gave 0.875, and
putting the confident-learning issues first 0.872. Confident learning is therefore used for the
*number* of issues, and the flagged images are that many of the lowest self-confidence (what
cleanlab calls ``filter_by="low_self_confidence"``): precision 0.97, recall 0.80, where the
confident-learning set itself had precision 0.86, recall 0.71. On the unmodified data it flags
2 of 720.

Below about 20 images a class, that probe is a poor judge (trained on 4/5 of 60 images, it put
0.33-0.67 of 3 moved labels in its top 3 on flowers12, DTD textures, RSSCN7 aerial scenes,
cats/dogs and product photos): a nearest-class-mean classifier (cosine to each class's mean
feature, the image itself left out of its own class's mean) needs no fitting and does better
there. The two are blended (``label_probabilities``): a geometric mixture weighted by which of
them classifies the given labels better out of fold, so the probe leads where it is the better
classifier and the class means where they are. Measured with ``benchmarks/audit_planted.py``'s
planting in feature space (5% of the labels moved to a random wrong class, 6 seeds, the five
folders above at 192 px), the share of moved images in the top N: 5 images a class 0.37 -> 0.71,
20 a class 0.73 -> 0.83, all (300-720 images) 0.85 -> 0.85.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from .similarity import power_normalised

PROBE_C = 0.01  # inverse L2 strength of the probe on standardised features (see above)
DEFAULT_FOLDS = 5
CENTROID_TEMPERATURE = 0.05  # softmax temperature of the cosines to the class means
BLEND_SCALE = 4.0  # images: the probe's weight is sigmoid((probe right - class means right) / BLEND_SCALE)


def _probe(c: float) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def _fit_predict(features: np.ndarray, labels: np.ndarray, queries: np.ndarray, num_classes: int, c: float) -> np.ndarray:
    """Probabilities ``[len(queries), num_classes]`` of a probe fit on ``features``; a class absent
    from ``labels`` gets probability 0, and with a single class present it gets all of it."""
    probs = np.zeros((len(queries), num_classes))
    present = np.unique(labels)
    if len(present) < 2:
        probs[:, present] = 1.0
        return probs
    model = _probe(c).fit(features, labels)
    probs[:, model.classes_] = model.predict_proba(queries)
    return probs


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, *, folds: int = DEFAULT_FOLDS, seed: int = 0, c: float = PROBE_C
) -> np.ndarray:
    """Class probabilities of every image from a probe that did not train on it: stratified
    k-fold (seeded), one standardised logistic regression per fold. ``[N, num_classes]``."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=num_classes)
    k = max(2, min(int(folds), int(counts.max()), len(labels)))
    probs = np.zeros((len(labels), num_classes))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    # one BLAS thread: on 2 busy cores OpenBLAS threads made each fit 35x slower (11 s vs 0.3 s)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the least populated class has only n members"
        for train, held in splitter.split(features, labels):
            probs[held] = _fit_predict(features[train], labels[train], features[held], num_classes, c)
    return probs


def held_out_probabilities(
    train_features: np.ndarray, train_labels: np.ndarray, features: np.ndarray, num_classes: int, *, c: float = PROBE_C
) -> np.ndarray:
    """Probabilities of images outside the training set (validation, test) from one probe fit on
    all the training images."""
    if len(features) == 0:
        return np.zeros((0, num_classes))
    with threadpool_limits(1):
        return _fit_predict(train_features, np.asarray(train_labels, dtype=np.int64), features, num_classes, c)


def _centred_units(features: np.ndarray, mean: np.ndarray) -> np.ndarray:
    unit = power_normalised(features).astype(np.float64) - mean
    return unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)


def centroid_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, queries: np.ndarray | None = None,
    *, temperature: float = CENTROID_TEMPERATURE,
) -> np.ndarray:
    """Nearest-class-mean probabilities: ``softmax(cos(image, class mean) / temperature)`` on
    power-normalised features centred on the training mean. Without ``queries``, of the training
    images themselves, each left out of its own class's mean (a class it alone holds gets 0)."""
    labels = np.asarray(labels, dtype=np.int64)
    mean = power_normalised(features).astype(np.float64).mean(axis=0)
    train = _centred_units(features, mean)
    sums = np.zeros((num_classes, train.shape[1]))
    np.add.at(sums, labels, train)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if queries is None:
        rows, units = np.arange(len(labels)), train
        cosines = units @ sums.T  # [N, K] before the leaving out
        own = sums[labels] - units  # each image's class sum without itself
        cosines[rows, labels] = (units * own).sum(axis=1)
        norms = np.repeat(np.linalg.norm(sums, axis=1)[None, :], len(labels), axis=0)
        norms[rows, labels] = np.linalg.norm(own, axis=1)
        empty = np.repeat((counts == 0)[None, :], len(labels), axis=0)
        empty[rows, labels] = counts[labels] <= 1
    else:
        units = _centred_units(queries, mean)
        cosines = units @ sums.T
        norms = np.repeat(np.linalg.norm(sums, axis=1)[None, :], len(units), axis=0)
        empty = np.repeat((counts == 0)[None, :], len(units), axis=0)
    scores = np.where(empty, -np.inf, cosines / np.maximum(norms, 1e-12) / temperature)
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    return probs / probs.sum(axis=1, keepdims=True)


def blend_weight(probe: np.ndarray, centroids: np.ndarray, labels: np.ndarray, scale: float = BLEND_SCALE) -> float:
    """The probe's share of the blend: ``sigmoid((images the probe gets right - images the class
    means get right) / scale)``, both out of fold on the given labels."""
    labels = np.asarray(labels, dtype=np.int64)
    lead = float((probe.argmax(axis=1) == labels).sum()) - float((centroids.argmax(axis=1) == labels).sum())
    return float(1.0 / (1.0 + np.exp(-lead / scale)))


def blend(probe: np.ndarray, centroids: np.ndarray, weight: float) -> np.ndarray:
    """The normalised geometric mixture ``probe**weight * centroids**(1 - weight)``."""
    logs = weight * np.log(np.clip(probe, 1e-12, 1.0)) + (1.0 - weight) * np.log(np.clip(centroids, 1e-12, 1.0))
    logs -= logs.max(axis=1, keepdims=True)
    probs = np.exp(logs)
    return probs / probs.sum(axis=1, keepdims=True)


def label_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, queries: np.ndarray, *, folds: int = DEFAULT_FOLDS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, float]:
    """Class probabilities of the training images (out of fold) and of ``queries`` (validation,
    test): the probe and the class means blended (see the module's doc); and the probe's weight."""
    probe = out_of_fold_probabilities(features, labels, num_classes, folds=folds, seed=seed)
    centroids = centroid_probabilities(features, labels, num_classes)
    weight = blend_weight(probe, centroids, labels)
    held = np.zeros((0, num_classes))
    if len(queries):
        held = blend(held_out_probabilities(features, labels, queries, num_classes),
                     centroid_probabilities(features, labels, num_classes, queries), weight)
    return blend(probe, centroids, weight), held, weight


def self_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The probability each image's given label receives."""
    return probs[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]


def class_thresholds(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Confident learning's per-class thresholds: the mean self-confidence of each class's images
    (1.0 for a class without images, so that nothing is confidently counted in it)."""
    labels = np.asarray(labels, dtype=np.int64)
    confidence = self_confidence(probs, labels)
    return np.array([confidence[labels == k].mean() if (labels == k).any() else 1.0 for k in range(num_classes)])


def confident_issues(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean mask: the given label's probability is below its class threshold and some other
    class's probability reaches that class's threshold."""
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))
    above = probs >= thresholds[None, :]
    above[rows, labels] = False
    return (probs[rows, labels] < thresholds[labels]) & above.any(axis=1)


@dataclass
class LabelIssues:
    """The label audit of N images (indices into the arrays it was computed from)."""

    order: np.ndarray  # every image, most likely mislabeled first (lowest self-confidence)
    flagged: np.ndarray  # the first ``len(flagged)`` of ``order``: as many as confident learning counts
    confident: np.ndarray  # boolean mask of the confident-learning issues themselves
    self_confidence: np.ndarray  # p(given label) per image
    suggested: np.ndarray  # argmax class per image
    thresholds: np.ndarray  # per class

    def flagged_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.order), dtype=bool)
        mask[self.flagged] = True
        return mask


def rank_label_issues(
    probs: np.ndarray, labels: np.ndarray, num_classes: int, *, thresholds: np.ndarray | None = None
) -> LabelIssues:
    """Rank by self-confidence; flag as many images as confident learning finds issues.
    ``thresholds`` default to those of ``probs`` itself; pass the training images' thresholds to
    score held-out images on the same scale."""
    labels = np.asarray(labels, dtype=np.int64)
    if thresholds is None:
        thresholds = class_thresholds(probs, labels, num_classes)
    confidence = self_confidence(probs, labels)
    order = np.argsort(confidence, kind="stable")
    confident = confident_issues(probs, labels, thresholds)
    return LabelIssues(order, order[: int(confident.sum())], confident, confidence, probs.argmax(axis=1), thresholds)
