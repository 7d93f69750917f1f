"""Which backbone fits the data: every candidate's converged probe, cross-validated on the labelled
images a run learns from (train and validation; the test split is never read), and its cost.

For each candidate with ImageNet weights on the machine: one forward pass per image at the
backbone's native pretrained preprocessing (its size, crop_pct and interpolation, as a user's own
probe computes features; phase 1 itself reads at 8/7 of that size), the phase-1 probe (``fit_probe``: C by cross-validation), then
its out-of-fold predictions on the same stratified folds for every candidate, so that the
candidates are compared image by image. Cost: feature images/s, training images/s (timed
fine-tuning steps at the recipe's image size and batch), parameters, the training-memory estimate.

Candidates rank by out-of-fold log-loss (every image counts, smoothly; top-1 on a few hundred
images moves in steps of 0.3-0.5 points). ``benchmarks/SELECT.md`` measures how well that
ranking predicts the fine-tuned one. ``transferkit select`` prints and writes the ranking;
``backbone.name = "auto"`` trains the first of ``backbone.candidates``'s ranking.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...data.decoding import decode_splits
from ...data.preprocessing import preprocessing_for
from ...data.sources import DatasetSplits
from ...errors import RecipeError, WeightsError
from ...models.backbone import create_backbone, data_config
from ...models.weight_sources import local_weights
from ...recipe import AUTO_BACKBONE, Recipe, with_backbone
from ..runtime.device import Runtime, resolve_runtime
from ..splits import build_splits
from ..training.feature_cache import FeatureCache
from ..training.probe import fit_probe
from .memory_estimate import estimate_training_memory

DEFAULT_FOLDS = 5
TIMED_STEPS = 2  # fine-tuning steps timed per candidate, after one untimed


@dataclass
class Candidate:
    """One backbone's figures; ``rank`` 1 is the recommendation."""

    backbone: str
    native_size: int
    cv_top1: float
    cv_log_loss: float
    C: float
    feature_images_per_s: float
    train_images_per_s: float
    parameters: int
    train_memory_gb: float
    seconds: float
    rank: int = 0
    # against the first-ranked, image by image: mean log-loss difference and its standard error
    log_loss_gap: float = 0.0
    log_loss_gap_se: float = 0.0


@dataclass
class BackboneRanking:
    candidates: list[Candidate]
    images: int
    classes: int
    folds: int
    why: str
    seconds: float = 0.0
    splits_used: list[str] = field(default_factory=lambda: ["train", "val"])

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    def to_dict(self) -> dict[str, Any]:
        return {"recommended": self.best.backbone, "why": self.why, "images": self.images, "classes": self.classes,
                "folds": self.folds, "splits_used": self.splits_used, "test_split_read": False,
                "seconds": round(self.seconds, 1), "ranking": [asdict(c) for c in self.candidates]}


def check_candidates(names: Sequence[str], origin: str) -> None:
    """Every candidate registered and with its ImageNet weights on this machine (no download)."""
    from ...plugins import registry

    if not names:
        raise RecipeError(f"{origin}: no candidate backbones; give two or more, e.g."
                          " timm/tf_efficientnet_lite0,timm/tf_efficientnet_lite1")
    if len(set(names)) != len(names):
        raise RecipeError(f"{origin}: a candidate is named twice: {', '.join(names)}")
    backbones = registry("backbone")
    for name in names:
        if name == AUTO_BACKBONE or name not in backbones:
            raise RecipeError(f"{origin}: {backbones.unknown_message(name)}")
        found = local_weights(name)
        if found is not None and found[0] is None:
            where = f" (looked in: {', '.join(found[1])})" if found[1] else ""
            raise WeightsError(f"{origin}: candidate {name!r} has no ImageNet weights on this machine{where}; leave it out"
                               " (transferkit list backbones --available: those here)")


def rank_backbones(
    recipe: Recipe, candidates: Sequence[str], *, splits: DatasetSplits | None = None, folds: int = DEFAULT_FOLDS,
    origin: str = "--backbones", log: Callable[[str], None] = print,
) -> BackboneRanking:
    """Rank ``candidates`` on the recipe's training and validation images (``splits``: the run's)."""
    started = time.perf_counter()
    check_candidates(list(candidates), origin)
    if folds < 2:
        raise RecipeError(f"{origin}: folds = {folds}; give 2 or more")
    splits = splits if splits is not None else build_splits(recipe)
    splits = dataclasses.replace(splits, test=None)  # never read, not even decoded
    # the features each candidate would train on: the recipe's readout
    backbones = {name: create_backbone(name, weights="imagenet", readout=recipe.backbone.readout) for name in candidates}
    native = {name: preprocessing_for(data_config(b), None) for name, b in backbones.items()}
    shorter = max(p.resize_shorter_side for p in native.values())
    splits, report = decode_splits(splits, shorter=shorter, on_bad=recipe.data.on_bad_image, budget_mb=recipe.data.decode_cache_mb)
    if report.bad:
        log(f"skipped {len(report.bad)} bad image(s)")
    labelled = [s for s in (splits.train, splits.val) if s is not None and len(s)]
    labels = np.concatenate([np.asarray(s.targets, dtype=np.int64) for s in labelled])
    num_classes = len(splits.classes)
    counts = np.bincount(labels, minlength=num_classes)
    k = int(min(folds, counts[counts > 0].min()))
    if k < 2:
        raise RecipeError(f"{origin}: a class has a single labelled image; cross-validation needs two per class")
    fold_of = _fold_index(labels, k, recipe.seed)
    runtime = resolve_runtime(recipe.train)
    rows, losses = [], {}
    for name, backbone in backbones.items():
        row, per_image = _candidate(name, backbone, native[name], labelled, labels, num_classes, fold_of, recipe, runtime)
        rows.append(row)
        losses[name] = per_image
        log(f"  {name}: out-of-fold top-1 {row.cv_top1:.4f}, log-loss {row.cv_log_loss:.4f}"
            f" ({row.feature_images_per_s:.1f} images/s features, {row.seconds:.0f} s)")
    rows.sort(key=lambda r: (r.cv_log_loss, -r.cv_top1, -r.train_images_per_s))
    for rank, row in enumerate(rows, 1):
        diff = losses[row.backbone] - losses[rows[0].backbone]
        row.rank, row.log_loss_gap = rank, float(diff.mean())
        row.log_loss_gap_se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
    used = [name for name in ("train", "val") if getattr(splits, name) is not None and len(getattr(splits, name))]
    return BackboneRanking(rows, len(labels), num_classes, k, _why(rows), time.perf_counter() - started, used)


def _fold_index(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    fold_of = np.zeros(len(labels), dtype=np.int64)
    for f, (_, held) in enumerate(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(labels, labels)):
        fold_of[held] = f
    return fold_of


def _candidate(
    name: str, backbone: torch.nn.Module, preprocessing: Any, labelled: list, labels: np.ndarray, num_classes: int,
    fold_of: np.ndarray, recipe: Recipe, runtime: Runtime,
) -> tuple[Candidate, np.ndarray]:
    started = time.perf_counter()
    backbone = backbone.to(runtime.device)
    if runtime.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    batch = recipe.data.eval_batch_size or recipe.data.batch_size * 2
    chunks = [FeatureCache.compute(backbone, images, preprocessing, runtime, batch_size=batch, num_workers=recipe.data.num_workers,
                                   desc=f"{name.split('/')[-1]} features").features[0] for images in labelled]
    features = torch.cat(chunks)
    feature_rate = len(labels) / max(time.perf_counter() - started, 1e-9)
    y = torch.as_tensor(labels)
    chosen = fit_probe(features, y, num_classes, seed=recipe.seed)
    C = chosen.C
    log_probs = torch.zeros(len(labels), num_classes)
    for f in range(int(fold_of.max()) + 1):
        held = torch.as_tensor(fold_of == f)
        fit = fit_probe(features[~held], y[~held], num_classes, Cs=(C,), scalings=(chosen.scaling,))
        log_probs[held] = torch.log_softmax(features[held] @ fit.weight.T + fit.bias, dim=1)
    per_image = -log_probs[torch.arange(len(y)), y].double().numpy()
    top1 = float((log_probs.argmax(1) == y).float().mean())
    memory = estimate_training_memory(recipe, backbone.cpu() if runtime.device.type != "cpu" else backbone)
    row = Candidate(
        backbone=name, native_size=preprocessing.image_size, cv_top1=top1, cv_log_loss=float(per_image.mean()), C=C,
        feature_images_per_s=feature_rate, train_images_per_s=_training_rate(backbone.to(runtime.device), recipe, num_classes, runtime),
        parameters=sum(p.numel() for p in backbone.parameters()), train_memory_gb=memory.total / 2**30,
        seconds=time.perf_counter() - started,
    )
    return row, per_image


def _training_rate(backbone: torch.nn.Module, recipe: Recipe, num_classes: int, runtime: Runtime) -> float:
    """Images per second of full fine-tuning steps (forward, backward, AdamW) at the recipe's size."""
    size = int(recipe.data.image_size or data_config(backbone)["input_size"][-1])
    batch = recipe.data.batch_size
    backbone.eval()  # BatchNorm as phase 2 keeps it
    with torch.no_grad():
        width = backbone(torch.zeros(1, 3, size, size, device=runtime.device)).shape[1]
    head = torch.nn.Linear(width, num_classes).to(runtime.device)
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    inputs = torch.randn(batch, 3, size, size, device=runtime.device)
    if runtime.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, num_classes, (batch,), device=runtime.device)
    state = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    elapsed = 0.0
    for step in range(TIMED_STEPS + 1):
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with runtime.autocast():
            loss = F.cross_entropy(head(backbone(inputs)).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            elapsed += time.perf_counter() - started
    backbone.load_state_dict(state)  # the timing's steps leave no trace
    for p in params:
        p.grad = None
    return batch * TIMED_STEPS / max(elapsed, 1e-9)


def _why(rows: list[Candidate]) -> str:
    best = rows[0]
    if len(rows) == 1:
        return f"{best.backbone}: the only candidate (out-of-fold top-1 {best.cv_top1:.4f}, log-loss {best.cv_log_loss:.4f})"
    second = rows[1]
    clear = second.log_loss_gap > 2 * second.log_loss_gap_se
    cost = second.train_images_per_s / best.train_images_per_s if best.train_images_per_s else float("nan")
    text = (f"{best.backbone} has the lowest out-of-fold log-loss of {len(rows)} candidates ({best.cv_log_loss:.4f} against"
            f" {second.cv_log_loss:.4f} for {second.backbone}: {second.log_loss_gap:+.4f} ± {second.log_loss_gap_se:.4f} per image,"
            f" {'more than two standard errors' if clear else 'within two standard errors: a tie on these images'});"
            f" top-1 {best.cv_top1:.4f} against {second.cv_top1:.4f};"
            f" its fine-tuning steps take {cost:.1f}x the time of {second.backbone}'s")
    cheaper = [r for r in rows[1:] if r.train_images_per_s > best.train_images_per_s
               and r.log_loss_gap <= 2 * r.log_loss_gap_se]
    if cheaper:
        fastest = max(cheaper, key=lambda r: r.train_images_per_s)
        text += (f". {fastest.backbone} is as good within noise and trains"
                 f" {fastest.train_images_per_s / best.train_images_per_s:.1f}x faster: a fair choice when time counts")
    return text


def resolve_auto_backbone(
    recipe: Recipe, splits: DatasetSplits | None = None, log: Callable[[str], None] = print
) -> tuple[Recipe, BackboneRanking | None]:
    """``backbone.name = "auto"``: the recipe with the first of ``backbone.candidates``'s ranking
    on its own training and validation images; any other name: the recipe unchanged."""
    if recipe.backbone.name != AUTO_BACKBONE:
        return recipe, None
    names = list(recipe.backbone.candidates)
    log(f"backbone.name = \"auto\": ranking {len(names)} candidates by a cross-validated probe on the training images")
    ranking = rank_backbones(recipe, names, splits=splits, origin="backbone.candidates", log=log)
    log(f"backbone: {ranking.why}")
    return with_backbone(recipe, ranking.best.backbone), ranking
