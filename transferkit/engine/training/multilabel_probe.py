"""Phase 1 for multi-label data (issue 26) as a converged linear probe: one-vs-rest L2-regularised
logistic regression on the cached features, one sigmoid per label, fitted full-batch with L-BFGS,
its C chosen by k-fold cross-validation on folds from iterative stratification.

What ``probe.py`` does for one label per image, kept the same wherever it carries over:

- features standardised (unbiased std, floored), the scaling folded back into the returned weight
  and bias, so ``logits = features @ weight.T + bias`` on the raw features; with fewer samples than
  features the fit runs in the samples' span (exact for an L2 penalty);
- every fit in float64 (float32 L-BFGS stalls short of its tolerances);
- C is scikit-learn's, on the summed loss: the objective is
  ``mean_i sum_l loss_il + l2 / 2 * ||W||^2`` with ``l2 = 1 / (C * n)``, the bias unpenalised,
  which is ``LogisticRegression(C)`` fitted to each label on its own (the labels' losses and
  penalties add up, so the joint optimum is each label's optimum);
- the grid walked from strong to weak regularisation, each fold warm-started from its fit at the
  previous C, stopped once the held-out loss has risen twice; ties go to the stronger penalty.

One C is shared by all labels. A C per label would be L searches whose rare labels are scored
on a handful of held-out positives each, a noisy choice; on standardised features the best C
of most labels is within a decade of one another (the tests compare with scikit-learn's per-label
``LogisticRegressionCV``). The fold score is the held-out binary log-loss summed over labels,
per image (a proper score, smooth, so small folds rarely tie), without ``pos_weight``: C is chosen
for the probabilities, as ``probe.py`` scores hard labels without class weights.

``pos_weight`` (per label, as ``BCEWithLogitsLoss``'s) multiplies the loss of each positive, which
is scikit-learn's ``class_weight={0: 1, 1: w}`` on that label: for rare labels, where an
unweighted fit ranks well but rarely reaches a probability of one half.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...data.iterative_stratification import iterative_folds
from ...data.sources import capped
from ...errors import DataError
from .probe import DEFAULT_CS, SMALL_PROBLEM, _threads, moments, raw_head, row_span


@dataclass
class MultiLabelProbeFit:
    """A fitted multi-label head on raw features: ``logits = features @ weight.T + bias``, each
    label's probability ``sigmoid(logits)``. ``weight`` ``[L, F]``, ``bias`` ``[L]``."""

    weight: torch.Tensor
    bias: torch.Tensor
    C: float
    l2: float
    folds: int
    cv_loss: dict[float, float] = field(default_factory=dict)
    seconds: float = 0.0

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features.to(self.weight.dtype) @ self.weight.T + self.bias

    def summary(self) -> dict:
        return {
            "solver": "lbfgs",
            "head": "one-vs-rest logistic",
            "C": self.C,
            "l2": self.l2,
            "folds": self.folds,
            "cv_loss": {f"{c:.4g}": round(v, 5) for c, v in self.cv_loss.items()},
            "seconds": round(self.seconds, 2),
        }


def balanced_pos_weight(targets: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Negatives over positives per label (``BCEWithLogitsLoss``'s usual ``pos_weight``): each
    label's positives weigh as much as its negatives in the loss. Labels with no positive get 1."""
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float64)
    positives = y.sum(dim=0)
    return torch.where(positives > 0, (len(y) - positives) / positives.clamp_min(1.0), torch.ones_like(positives))


def _minimise(
    z: torch.Tensor, y: torch.Tensor, l2: float, pos_weight: torch.Tensor | None,
    start: tuple[torch.Tensor, torch.Tensor] | None, max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin over (W [F, L], b [L]) of sum_il BCE(z_i W_l + b_l, y_il) / n + l2 / 2 ||W||^2."""
    n, d = z.shape
    labels = y.shape[1]
    weight = (start[0].clone() if start else torch.zeros(d, labels, dtype=torch.float64)).requires_grad_(True)
    bias = (start[1].clone() if start else torch.zeros(labels, dtype=torch.float64)).requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-12,
        history_size=10, line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        data = F.binary_cross_entropy_with_logits(z @ weight + bias, y, pos_weight=pos_weight, reduction="sum") / n
        loss = data + 0.5 * l2 * (weight * weight).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _held_out_loss(z: torch.Tensor, y: torch.Tensor, fit: tuple[torch.Tensor, torch.Tensor]) -> float:
    weight, bias = fit
    return F.binary_cross_entropy_with_logits(z @ weight + bias, y, reduction="sum").item()


def _check_targets(targets: torch.Tensor, n: int, label_names: Sequence[str] | None) -> None:
    if targets.ndim != 2 or targets.shape[0] != n:
        raise ValueError(f"expected targets [{n}, L], got shape {tuple(targets.shape)}")
    if not ((targets == 0) | (targets == 1)).all():
        raise ValueError("targets must be a multi-hot matrix of 0 and 1")
    names = list(label_names) if label_names is not None else [f"label {j}" for j in range(targets.shape[1])]
    positives = targets.sum(dim=0)
    for count, what in ((0, "no positive"), (n, "no negative")):
        bad = [names[j] for j in torch.nonzero(positives == count).flatten().tolist()]
        if bad:
            raise DataError(f"{len(bad)} label(s) with {what} image among the {n} training images: {capped(bad)}; a"
                            " logistic head cannot learn them: add images, or leave those labels out")


def fit_multilabel_probe(
    features: torch.Tensor,
    targets: torch.Tensor | np.ndarray,
    *,
    Cs: Sequence[float] = DEFAULT_CS,
    folds: int = 5,
    seed: int = 0,
    pos_weight: torch.Tensor | Sequence[float] | None = None,
    max_iter: int = 100,
    label_names: Sequence[str] | None = None,
) -> MultiLabelProbeFit:
    """Fit the head on ``features`` ``[N, F]`` and multi-hot ``targets`` ``[N, L]``. With one C, or
    fewer than two images per fold, no cross-validation runs (the middle of ``Cs`` when there are
    several). Every label needs a positive and a negative image (a ``DataError`` names those that
    lack one). ``pos_weight``: ``[L]`` weights of each label's positives (``balanced_pos_weight``)."""
    size = features.shape[0] * features.shape[1] * max(1, int(np.asarray(targets).shape[-1]))
    with _threads(1 if size < SMALL_PROBLEM else torch.get_num_threads()):
        return _fit(features, targets, Cs, folds, seed, pos_weight, max_iter, label_names)


def _fit(
    features: torch.Tensor, targets: torch.Tensor | np.ndarray, Cs: Sequence[float], folds: int, seed: int,
    pos_weight: torch.Tensor | Sequence[float] | None, max_iter: int, label_names: Sequence[str] | None,
) -> MultiLabelProbeFit:
    started = time.perf_counter()
    x = features.detach().cpu().to(torch.float64)
    n = x.shape[0]
    y = torch.as_tensor(np.asarray(targets)).to(torch.float64)
    _check_targets(y, n, label_names)
    pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float64).reshape(-1)
    if pw is not None and len(pw) != y.shape[1]:
        raise ValueError(f"pos_weight has {len(pw)} entries for {y.shape[1]} labels")
    mean, std = moments(x)
    z, basis = row_span((x - mean) / std)
    Cs = sorted(float(c) for c in Cs)
    k = min(folds, n // 2) if len(Cs) > 1 else 1
    cv: dict[float, float] = {}
    if k >= 2:
        splits = [(torch.as_tensor(tr), torch.as_tensor(he)) for tr, he in iterative_folds(y.numpy().astype(np.uint8), k, seed)]
        starts: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * k
        for c in Cs:  # strong to weak; each fold warm-starts from its fit at the previous C
            total = 0.0
            for f, (tr, he) in enumerate(splits):
                starts[f] = _minimise(z[tr], y[tr], 1.0 / (c * len(tr)), pw, starts[f], max_iter)
                total += _held_out_loss(z[he], y[he], starts[f])
            cv[c] = total / n
            losses = list(cv.values())
            if len(losses) >= 3 and losses[-1] > losses[-2] > losses[-3]:
                break  # past the minimum
        best_c = min(cv, key=lambda c: (cv[c], c))
    else:
        best_c = Cs[len(Cs) // 2]
    l2 = 1.0 / (best_c * n)
    w, b = _minimise(z, y, l2, pw, None, max_iter * 2)
    weight, bias = raw_head(w, b, basis, mean, std)
    return MultiLabelProbeFit(weight=weight, bias=bias, C=best_c, l2=l2, folds=k, cv_loss=cv, seconds=time.perf_counter() - started)
