"""Phase 1 as a converged linear probe: multinomial logistic regression on the cached features,
fitted full-batch with L-BFGS, its L2 strength chosen by stratified k-fold cross-validation.

What scikit-learn's ``LogisticRegressionCV`` does, on the head's own parameters and in seconds:
features are standardised (the scaling is folded back into the head, so the model is unchanged
in shape); when there are fewer samples than features the fit runs in the samples' span (exact
for an L2 penalty: the optimum lies there); each fold walks the grid from strong to weak
regularisation, warm-starting every fit from the last. The penalty ``l2 / 2 * ||W||^2`` on the
mean loss equals scikit-learn's ``C = 1 / (l2 * n)``.

Label smoothing and class weights keep their training meaning: targets are smoothed, and a
sample weighs ``sum_c target_c * w_c`` exactly as in ``loop.soft_cross_entropy``. The fold score
is the held-out log-loss of hard labels (smooth, so small folds rarely tie; ties go to the
stronger penalty, the simpler model).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

# scikit-learn C values (1 / (l2 * n)) tried by cross-validation, strong to weak: on standardised
# features accuracy is flat within a decade, so decades suffice
DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
SMALL_PROBLEM = 5e7  # samples x features x classes below which one thread is faster (no thread hand-offs)


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
    cv_log_loss: dict[float, float] = field(default_factory=dict)
    seconds: float = 0.0
    pseudo_labels: dict | None = None  # data.unlabeled: what joined the final fit (pseudo_labels.py)

    def summary(self) -> dict:
        out = {
            "solver": "lbfgs",
            "C": self.C,
            "l2": self.l2,
            "folds": self.folds,
            "cv_log_loss": {f"{c:.4g}": round(v, 5) for c, v in self.cv_log_loss.items()},
            "seconds": round(self.seconds, 2),
        }
        return out if self.pseudo_labels is None else {**out, "pseudo_labels": self.pseudo_labels}


def _targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    targets = F.one_hot(labels, num_classes).to(torch.float64)
    return targets * (1.0 - smoothing) + smoothing / num_classes if smoothing > 0 else targets


def _minimise(
    x: torch.Tensor, targets: torch.Tensor, sample_w: torch.Tensor, l2: float,
    start: tuple[torch.Tensor, torch.Tensor] | None, max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin over (W, b) of sum_i s_i CE(x_i W + b, t_i) / sum_i s_i + l2 / 2 ||W||^2."""
    d, c = x.shape[1], targets.shape[1]
    weight = (start[0].clone() if start else torch.zeros(d, c, dtype=x.dtype)).requires_grad_(True)
    bias = (start[1].clone() if start else torch.zeros(c, dtype=x.dtype)).requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6, tolerance_change=1e-10,
        history_size=10, line_search_fn="strong_wolfe",
    )
    total = sample_w.sum()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        per_sample = -(targets * torch.log_softmax(x @ weight + bias, dim=1)).sum(dim=1)
        loss = (per_sample * sample_w).sum() / total + 0.5 * l2 * (weight * weight).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _sample_weights(targets: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    if class_weights is None:
        return torch.ones(targets.shape[0], dtype=torch.float64)
    return targets @ class_weights.to(torch.float64)


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
) -> ProbeFit:
    """Fit the head on ``features`` ``[N, F]`` or ``[views, N, F]`` (views of the same images)
    and integer ``labels`` ``[N]``. With one C, or too few images per class for two folds, no
    cross-validation runs (the middle of ``Cs`` is used when it cannot). ``extra``: more samples
    (pseudo-labelled images) that join the final fit only, each with its weight; C is chosen
    on the labelled images alone and held-out folds never contain an extra sample."""
    size = features.shape[-2] * features.shape[-1] * num_classes * (features.shape[0] if features.ndim == 3 else 1)
    with _threads(1 if size < SMALL_PROBLEM else torch.get_num_threads()):
        return _fit_probe(features, labels, num_classes, label_smoothing, class_weights, Cs, folds, seed, max_iter, extra)


def _fit_probe(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, label_smoothing: float, class_weights: torch.Tensor | None,
    Cs: Sequence[float], folds: int, seed: int, max_iter: int, extra: Extra | None = None,
) -> ProbeFit:
    started = time.perf_counter()
    feats = features if features.ndim == 3 else features[None]
    views, n, _ = feats.shape
    x = feats.reshape(views * n, -1).to(torch.float64).cpu()
    y = labels.to(torch.long).cpu().repeat(views)
    groups = np.tile(np.arange(n), views)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    basis = None
    if z.shape[0] < z.shape[1]:  # fit in the samples' span: exact for an L2 penalty, and smaller
        _, s, vh = torch.linalg.svd(z, full_matrices=False)
        keep = s > s[0] * 1e-10
        basis = vh[keep]  # [r, F]
        z = z @ basis.T
    targets = _targets(y, num_classes, label_smoothing)
    sample_w = _sample_weights(targets, class_weights)
    Cs = sorted(float(c) for c in Cs)
    counts = np.bincount(y.numpy()[:n], minlength=num_classes)
    k = int(min(folds, counts[counts > 0].min())) if len(Cs) > 1 else 1
    cv: dict[float, float] = {}
    if k >= 2:
        folds_idx = [(torch.as_tensor(tr), torch.as_tensor(he), len(np.unique(groups[tr])))
                     for tr, he in _folds(y.numpy(), groups, k, seed)]
        starts: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(folds_idx)
        for c in Cs:  # strong to weak; each fold warm-starts from its previous fit
            total = 0.0
            for f, (tr, he, n_images) in enumerate(folds_idx):
                starts[f] = _minimise(z[tr], targets[tr], sample_w[tr], 1.0 / (c * n_images), starts[f], max_iter)
                weight, bias = starts[f]
                total += F.cross_entropy(z[he] @ weight + bias, y[he], reduction="sum").item()
            cv[c] = total / len(y)
            losses = list(cv.values())
            if len(losses) >= 3 and losses[-1] > losses[-2] > losses[-3]:
                break  # past the minimum: weaker penalties only fit slower and score worse
        best_c = min(cv, key=lambda c: (cv[c], c))  # ties: the stronger penalty
    else:
        best_c = Cs[len(Cs) // 2]
    l2 = 1.0 / (best_c * n)
    if extra is not None and len(extra.labels):
        # the labelled samples and the extra ones, standardised by the statistics of all of them (a
        # feature nearly constant on a few labelled images would blow the others up), in their span
        both = torch.cat([x, extra.features.to(torch.float64).cpu()])
        mean, std = both.mean(0), both.std(0).clamp_min(1e-6)
        z = (both - mean) / std
        basis = None
        if z.shape[0] < z.shape[1]:
            _, s, vh = torch.linalg.svd(z, full_matrices=False)
            basis = vh[s > s[0] * 1e-10]
            z = z @ basis.T
        extra_targets = _targets(extra.labels.to(torch.long).cpu(), num_classes, label_smoothing)
        labelled_weight = float(sample_w.sum())
        targets = torch.cat([targets, extra_targets])
        sample_w = torch.cat([sample_w, _sample_weights(extra_targets, class_weights) * extra.weights.to(torch.float64).cpu()])
        l2 = 1.0 / (best_c * n * float(sample_w.sum()) / labelled_weight)  # C on the summed loss, as sklearn's
    w, b = _minimise(z, targets, sample_w, l2, None, max_iter * 2)
    if basis is not None:
        w = basis.T @ w
    # undo the standardisation: z = (x - mean) / std  ->  logits = x @ (w / std) + (b - mean / std @ w)
    w_raw = w / std[:, None]
    b_raw = b - mean @ w_raw
    return ProbeFit(
        weight=w_raw.T.to(torch.float32).contiguous(), bias=b_raw.to(torch.float32), C=best_c, l2=l2, folds=k,
        cv_log_loss=cv, seconds=time.perf_counter() - started,
    )
