"""Phase 1 as a converged linear probe: multinomial logistic regression on the cached features,
fitted full-batch with L-BFGS, its L2 strength and its feature scaling chosen by stratified k-fold
cross-validation.

What scikit-learn's ``LogisticRegressionCV`` does, on the head's own parameters and in seconds:
features are centred and scaled (the scaling is folded back into the head, so the model is unchanged
in shape); when there are fewer samples than features the fit runs in the samples' span (exact
for an L2 penalty: the optimum lies there); each fold walks the grid from strong to weak
regularisation, warm-starting every fit from the last. The penalty ``l2 / 2 * ||W||^2`` on the
mean loss equals scikit-learn's ``C = 1 / (l2 * n)``.

Two scalings are tried, each over the C grid, and the pair with the lowest cross-validated
log-loss is kept (ties: per-feature). ``"feature"`` divides each feature by its own standard
deviation (``StandardScaler``); ``"block"`` divides each block of the readout (the pooled
features, each stage's averages: ``blocks``) by the root-mean-square of its features' deviations,
so the features keep their relative scale within a block, as a probe on raw features does. Neither
wins everywhere: on nine held-out folders (``benchmarks/PROBE_SCALING.md``) per-feature scaling
was ahead by up to 4 images on some, block scaling by up to 7 on others, and the choice by
cross-validation was within one image of the better one on each.

Label smoothing and class weights keep their training meaning: targets are smoothed, and a
sample weighs ``sum_c target_c * w_c`` exactly as in ``loop.soft_cross_entropy``. The fold score
is the held-out log-loss of hard labels (smooth, so small folds rarely tie; ties go to the
stronger penalty, the simpler model).

Large problems (``benchmarks/SCALE.md``): above ``CV_IMAGES`` images C is chosen on a stratified
sample of that many (C is scikit-learn's, on the summed loss, so it carries to the whole set) and
the final fit on every image starts from the sample's fit at that C; above ``MATERIALISE_UP_TO``
bytes of standardised rows it standardises them chunk by chunk (``Standardised``), never all at
once. Every fit runs in float64: in float32 L-BFGS cannot meet its tolerances and runs to its
iteration limit (on 10,000 images of 1024 features, 100 classes, the weaker penalties' fold fits
took 55-85 s each in float32; the whole float64 probe, 30 fits, 98 s). Targets are never an
``N x classes`` matrix: label smoothing enters through the loss.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...progress import progress

# scikit-learn C values (1 / (l2 * n)) tried by cross-validation, strong to weak: on standardised
# features accuracy is flat within a decade, so decades suffice
DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
SCALINGS = ("feature", "block")  # tried by cross-validation, in this order (ties: the first)
SMALL_PROBLEM = 5e7  # samples x features x classes below which one thread is faster (no thread hand-offs)
# standardised float64 rows held at once up to this many bytes; above it, made chunk by chunk (at
# 2**30, 90,000 rows of 1024 features were held, and their float64 copy beside them: +1.4 GB)
MATERIALISE_UP_TO = 2**28
# C is chosen by cross-validation on at most this many images (stratified); every image joins the
# final fit. The fold fits cost folds x C points x images: capped, they stop growing with the data
CV_IMAGES = 10_000


@dataclass
class Extra:
    """Samples for the final fit only: features ``[M, F]``, labels ``[M]``, weights ``[M]``."""

    features: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor


@dataclass
class ProbeFit:
    """A fitted head: ``logits = features @ weight.T + bias`` on the raw (unstandardised) features."""

    weight: torch.Tensor
    bias: torch.Tensor
    C: float
    l2: float
    folds: int
    cv_log_loss: dict[float, float] = field(default_factory=dict)  # at the chosen scaling
    scaling: str = "feature"
    cv_scaling_log_loss: dict[str, float] = field(default_factory=dict)  # each scaling's best
    seconds: float = 0.0
    pseudo_labels: dict | None = None  # data.unlabeled: what joined the final fit (pseudo_labels.py)

    def summary(self) -> dict:
        out = {
            "solver": "lbfgs",
            "C": self.C,
            "l2": self.l2,
            "folds": self.folds,
            "scaling": self.scaling,
            "cv_log_loss": {f"{c:.4g}": round(v, 5) for c, v in self.cv_log_loss.items()},
            "cv_scaling_log_loss": {k: round(v, 5) for k, v in self.cv_scaling_log_loss.items()},
            "seconds": round(self.seconds, 2),
        }
        return out if self.pseudo_labels is None else {**out, "pseudo_labels": self.pseudo_labels}


def _sample_weights(labels: torch.Tensor, smoothing: float, class_weights: torch.Tensor | None) -> torch.Tensor:
    """``sum_c target_c * w_c`` of each sample's smoothed target: ``(1 - s) w_y + s mean(w)``."""
    if class_weights is None:
        return torch.ones(labels.shape[0], dtype=torch.float64)
    w = class_weights.to(torch.float64).cpu()
    return (1.0 - smoothing) * w[labels] + smoothing * w.mean()


ROWS_PER_CHUNK = 4096  # a large fit standardises and scores this many rows at a time (16,384: +0.74 GB)


@dataclass
class Standardised:
    """``(x - mean) / std`` made chunk by chunk from the raw features ``x`` (which may be a
    memory-mapped cache): a large fit never holds every standardised row at once."""

    x: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return (self.x.shape[0], self.x.shape[1])

    def rows(self, index: torch.Tensor | slice) -> torch.Tensor:
        return (self.x[index].to(torch.float64) - self.mean) / self.std

    def chunks(self) -> Iterator[tuple[slice, torch.Tensor]]:
        for start in range(0, self.x.shape[0], ROWS_PER_CHUNK):
            part = slice(start, start + ROWS_PER_CHUNK)
            yield part, self.rows(part)


def row_span(design: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """With fewer rows than features, ``design`` in its rows' span and that basis ``[r, F]``: the
    optimum of an L2-penalised linear fit lies there, so fitting there is exact, and smaller."""
    if design.shape[0] >= design.shape[1]:
        return design, None
    _, s, vh = torch.linalg.svd(design, full_matrices=False)
    basis = vh[s > s[0] * 1e-10]
    return design @ basis.T, basis


def raw_head(
    w: torch.Tensor, b: torch.Tensor, basis: torch.Tensor | None, mean: torch.Tensor, std: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The head ``(weight [K, F], bias [K])`` in float32 on the raw features, from a fit ``(w [F or r, K], b)``
    on standardised ones (in ``basis``' span): z = (x - mean) / std -> x @ (w / std) + (b - mean / std @ w)."""
    if basis is not None:
        w = basis.T @ w
    w_raw = w / std[:, None]
    b_raw = b - mean @ w_raw
    return w_raw.T.to(torch.float32).contiguous(), b_raw.to(torch.float32)


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and (unbiased) standard deviation of ``x``'s rows, two passes in chunks with
    float64 sums, floored at 1e-6."""
    n = x.shape[0]
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, n, ROWS_PER_CHUNK):
        total += x[start:start + ROWS_PER_CHUNK].to(torch.float64).sum(0)
    mean = total / n
    squares = torch.zeros_like(total)
    for start in range(0, n, ROWS_PER_CHUNK):
        squares += ((x[start:start + ROWS_PER_CHUNK].to(torch.float64) - mean) ** 2).sum(0)
    std = (squares / max(n - 1, 1)).sqrt().clamp_min(1e-6)
    return mean, std


def block_scale(std: torch.Tensor, blocks: Sequence[int] | None) -> torch.Tensor:
    """``std`` with each block's features given the root-mean-square of that block's deviations
    (one block, the whole row, when ``blocks`` is None)."""
    widths = list(blocks) if blocks else [len(std)]
    if sum(widths) != len(std) or min(widths) < 1:
        raise ValueError(f"blocks {widths} do not partition {len(std)} features")
    return torch.cat([part.pow(2).mean().sqrt().expand(len(part)) for part in torch.split(std, widths)])


def scaled_by(scaling: str, std: torch.Tensor, blocks: Sequence[int] | None) -> torch.Tensor:
    """What each feature is divided by under ``scaling``, from its standard deviation ``std``."""
    return std if scaling == "feature" else block_scale(std, blocks)


def _minimise(
    x: torch.Tensor | Standardised, labels: torch.Tensor, num_classes: int, smoothing: float, sample_w: torch.Tensor, l2: float,
    start: tuple[torch.Tensor, torch.Tensor] | None, max_iter: int, bar: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin over (W, b) of sum_i s_i CE_smooth(x_i W + b, y_i) / sum_i s_i + l2 / 2 ||W||^2 (the
    smoothed cross-entropy is PyTorch's ``label_smoothing``: the same as soft targets, with no
    ``N x classes`` target matrix). ``x``: the rows, or a ``Standardised`` made chunk by chunk.
    ``bar``: a progress bar told of every evaluation of the loss."""
    d, dtype = x.shape[1], torch.float64
    weight = (start[0].clone() if start else torch.zeros(d, num_classes, dtype=dtype)).requires_grad_(True)
    bias = (start[1].clone() if start else torch.zeros(num_classes, dtype=dtype)).requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-10,
        history_size=10, line_search_fn="strong_wolfe",
    )
    total = sample_w.sum()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.zeros((), dtype=dtype)
        for part, z in x.chunks() if isinstance(x, Standardised) else [(slice(None), x)]:
            per_sample = F.cross_entropy(z @ weight + bias, labels[part], reduction="none", label_smoothing=smoothing)
            loss = (per_sample * sample_w[part]).sum() / total
            loss.backward()  # the gradient sums over chunks; no chunk's graph outlives it
            value += loss.detach()
        penalty = 0.5 * l2 * (weight * weight).sum()
        penalty.backward()
        if bar is not None:
            bar.update(1)
        return value + penalty.detach()

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def cv_sample(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of about ``limit`` images, every class in proportion (at least two of each class
    that has two, so it can still be split into folds), seeded; all of them when there are fewer."""
    n = len(labels)
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = min(len(members), max(2, int(round(len(members) * limit / n))))
        keep.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(keep))


def _folds(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds over images (all views of one image in one fold)."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    folds: int = 5,
    seed: int = 0,
    max_iter: int = 100,
    extra: Extra | None = None,
    cv_images: int = CV_IMAGES,
    blocks: Sequence[int] | None = None,
    scalings: Sequence[str] = SCALINGS,
) -> ProbeFit:
    """Fit the head on ``features`` ``[N, F]`` or ``[views, N, F]`` (views of the same images)
    and integer ``labels`` ``[N]``. With one C, or too few images per class for two folds, no
    cross-validation runs (the middle of ``Cs`` is used when it cannot, with the first of
    ``scalings``). ``extra``: more samples (pseudo-labelled images) that join the final fit only,
    each with its weight; C is chosen on the labelled images alone and held-out folds never contain
    an extra sample. ``cv_images``: more images than this choose C on a stratified sample of that
    many (the module's docstring). ``blocks``: the widths of the readout's parts, in order (one
    block when None); ``scalings``: those cross-validation may choose from (``SCALINGS``)."""
    unknown = sorted(set(scalings) - set(SCALINGS))
    if unknown or not scalings:
        raise ValueError(f"scalings {list(scalings)}: each must be one of {', '.join(SCALINGS)}")
    size = features.shape[-2] * features.shape[-1] * num_classes * (features.shape[0] if features.ndim == 3 else 1)
    with _threads(1 if size < SMALL_PROBLEM else torch.get_num_threads()):
        return _fit_probe(features, labels, num_classes, label_smoothing, class_weights, Cs, folds, seed, max_iter, extra,
                          cv_images, blocks, tuple(scalings))


def _design(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
) -> tuple[torch.Tensor | Standardised, torch.Tensor | None]:
    """The scaled rows (in their span when they fit in memory: ``row_span``) and that basis, or a
    ``Standardised`` made chunk by chunk."""
    design = Standardised(x, mean, std)
    if x.shape[0] * x.shape[1] * 8 <= MATERIALISE_UP_TO:  # every scaled row at once
        return row_span(design.rows(slice(None)))
    return design, None


def _cross_validate(
    design: torch.Tensor | Standardised, y: torch.Tensor, sample_w: torch.Tensor, rows: np.ndarray,
    folds_idx: list[tuple[torch.Tensor, torch.Tensor, int]], Cs: Sequence[float], num_classes: int, smoothing: float,
    max_iter: int, bar: Any,
) -> tuple[dict[float, float], dict[float, tuple[torch.Tensor, torch.Tensor]]]:
    """Held-out log-loss at each C (strong to weak, every fold warm-started from its last fit,
    stopping once past the minimum) and the first fold's fit at each C."""
    every = len(rows) == len(y)
    z = design if every and isinstance(design, torch.Tensor) else (
        design.rows(torch.as_tensor(rows)) if isinstance(design, Standardised) else design[torch.as_tensor(rows)])
    y_cv, w_cv = (y, sample_w) if every else (y[rows], sample_w[rows])
    starts: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(folds_idx)
    cv: dict[float, float] = {}
    at_c: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
    for c in Cs:
        total = 0.0
        for f, (tr, he, n_images) in enumerate(folds_idx):
            starts[f] = _minimise(z[tr], y_cv[tr], num_classes, smoothing, w_cv[tr], 1.0 / (c * n_images), starts[f], max_iter)
            weight, bias = starts[f]
            total += F.cross_entropy(z[he] @ weight + bias, y_cv[he], reduction="sum").item()
            if bar is not None:
                bar.update(1)
        at_c[c] = starts[0]
        cv[c] = total / len(rows)
        losses = list(cv.values())
        if len(losses) >= 3 and losses[-1] > losses[-2] > losses[-3]:
            break  # past the minimum: weaker penalties only fit slower and score worse
    return cv, at_c


def _fit_probe(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, label_smoothing: float, class_weights: torch.Tensor | None,
    Cs: Sequence[float], folds: int, seed: int, max_iter: int, extra: Extra | None, cv_images: int,
    blocks: Sequence[int] | None, scalings: tuple[str, ...],
) -> ProbeFit:
    started = time.perf_counter()
    feats = features if features.ndim == 3 else features[None]
    views, n, d = feats.shape
    x = feats.reshape(views * n, d).cpu()  # a view: a memory-mapped cache stays on disk
    y = labels.to(torch.long).cpu().repeat(views)
    groups = np.tile(np.arange(n), views)
    mean, feature_std = moments(x)
    sample_w = _sample_weights(y, label_smoothing, class_weights)
    Cs = sorted(float(c) for c in Cs)
    counts = np.bincount(y.numpy()[:n], minlength=num_classes)
    k = int(min(folds, counts[counts > 0].min())) if len(Cs) > 1 else 1
    sampled = cv_sample(y.numpy()[:n], cv_images, seed)
    results: dict[str, tuple[dict[float, float], dict[float, tuple[torch.Tensor, torch.Tensor]]]] = {}
    if k >= 2:
        rows = np.flatnonzero(np.isin(groups, sampled)) if len(sampled) < n else np.arange(len(y))
        folds_idx = [(torch.as_tensor(tr), torch.as_tensor(he), len(np.unique(groups[rows][tr])))
                     for tr, he in _folds(y.numpy()[rows], groups[rows], k, seed)]
        bar = progress(total=len(scalings) * len(Cs) * len(folds_idx), desc="probe: C and scaling by cross-validation",
                       unit="fit") if n > cv_images else None
        for scaling in scalings:
            design, _ = _design(x, mean, scaled_by(scaling, feature_std, blocks))
            results[scaling] = _cross_validate(design, y, sample_w, rows, folds_idx, Cs, num_classes, label_smoothing, max_iter, bar)
            del design
        if bar is not None:
            bar.close()
        # the lowest held-out log-loss; ties: the stronger penalty, then the first scaling
        scaling, best_c = min(((s, c) for s in scalings for c in results[s][0]),
                              key=lambda sc: (results[sc[0]][0][sc[1]], sc[1], scalings.index(sc[0])))
    else:
        scaling, best_c = scalings[0], Cs[len(Cs) // 2]
    std = scaled_by(scaling, feature_std, blocks)
    design, basis = _design(x, mean, std)
    l2 = 1.0 / (best_c * n)
    # on a sample, the final fit on every image starts from the sample's fit at the chosen C
    start = results[scaling][1].get(best_c) if results and len(sampled) < n else None
    if extra is not None and len(extra.labels):
        # the labelled samples and the extra ones, scaled by the statistics of all of them (a
        # feature nearly constant on a few labelled images would blow the others up), in their span
        both = torch.cat([x.to(torch.float64), extra.features.to(torch.float64).cpu()])
        mean, both_std = moments(both)
        std = scaled_by(scaling, both_std, blocks)
        design, basis = row_span((both - mean) / std)
        start = None
        extra_labels = extra.labels.to(torch.long).cpu()
        labelled_weight = float(sample_w.sum())
        y = torch.cat([y, extra_labels])
        extra_w = _sample_weights(extra_labels, label_smoothing, class_weights) * extra.weights.to(torch.float64).cpu()
        sample_w = torch.cat([sample_w, extra_w])
        l2 = 1.0 / (best_c * n * float(sample_w.sum()) / labelled_weight)  # C on the summed loss, as sklearn's
    # a large fit says how far it is (at most 5/4 evaluations per iteration: LBFGS's max_eval)
    bar = progress(total=max_iter * 2 * 5 // 4, desc=f"probe: fit on {len(y):,} samples", unit="pass") if n > cv_images else None
    w, b = _minimise(design, y, num_classes, label_smoothing, sample_w, l2, start, max_iter * 2, bar)
    if bar is not None:
        bar.close()
    weight, bias = raw_head(w, b, basis, mean, std)
    return ProbeFit(weight=weight, bias=bias, C=best_c, l2=l2, folds=k, cv_log_loss=results[scaling][0] if results else {},
                    scaling=scaling, cv_scaling_log_loss={s: min(r[0].values()) for s, r in results.items()},
                    seconds=time.perf_counter() - started)
