"""The two-phase policy on one page: what each phase trains, at which learning rate, on which
batches, with which BatchNorm mode. The trainer, ``lr-find``, ``check`` and ``plan`` set phases up
through these functions, so they cannot drift apart.

1. **extract** — ``freeze_backbone``: no gradients in the backbone, BatchNorm in eval mode; only
   the head trains. Nothing in the backbone changes, so by default
   (``phases.extract.cache_features``) its features are computed once (``phase1_caches``) and the
   head is fitted on them as a converged logistic probe (``fit_probe_head``: L-BFGS, L2 strength
   by cross-validation); with ``solver = "sgd"`` (or the cache off) it trains for ``epochs`` at
   ``phases.extract.lr`` instead (``HeadOnly`` on cached features). Batch augmentations wait for
   phase 2.
2. **finetune** — ``unfreeze_backbone``: all of the backbone, or its last K stages, trains too at
   ``finetune_lr``: ``phases.finetune.lr``, or ``phases.extract.lr x lr_ratio`` (``layer_decay`` < 1:
   lower for stages further from the head); BatchNorm stays in eval mode unless ``bn = "train"``.
   The model starts from phase 1's head.
3. **the final weights** — ``train.final`` (``final.choice``): the last epoch, the best validation
   epoch, or (``"auto"``) the best on validation among the phase-1 probe, the fine-tuned model
   and their weight-space interpolations (WiSE-FT).

The recipe's averager follows the finetune phase (an SGD extract phase when finetune has no epochs).
Every epoch of every phase draws its data order and augmentations from ``(seed, epoch_key)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from ...data.loaders import EpochBatchSampler, TransformedDataset, make_loader
from ...errors import NonFiniteLossError, RecipeError
from ...models.classifier import Classifier
from ...models.readout import readout_blocks
from ...recipe import EXTRACT, FINETUNE, PHASES, Recipe, TrainConfig
from ..prepare import Prepared
from ..runtime.device import Runtime
from ..runtime.distributed import DistContext
from . import optim
from .class_weights import recipe_class_weights, weights_tensor
from .feature_cache import FeatureCache
from .loop import StepSettings, train_epoch
from .probe import DEFAULT_CS, ProbeFit, fit_probe
from .pseudo_labels import refit_with_pseudo_labels, unlabeled_features

PHASE_ORDER = {name: i for i, name in enumerate(PHASES)}
EPOCHS_PER_PHASE_KEY = 100_000  # epoch keys of different phases never meet


@dataclass(frozen=True)
class PhasePlan:
    """One phase as the recipe asks for it."""

    name: str
    index: int
    epochs: int
    lr: float
    warmup_epochs: float
    unfreeze: str = "none"
    bn: str = "eval"
    cycles: int = 1
    layer_decay: float = 1.0


def phase_plans(recipe: Recipe) -> list[PhasePlan]:
    """The recipe's two phases, in order."""
    p = recipe.phases
    return [
        PhasePlan(EXTRACT, 0, p.extract.epochs, p.extract.lr, p.extract.warmup_epochs),
        PhasePlan(FINETUNE, 1, p.finetune.epochs, finetune_lr(recipe), p.finetune.warmup_epochs,
                  p.finetune.unfreeze, p.finetune.bn, p.finetune.cycles, p.finetune.layer_decay),
    ]


def finetune_lr(recipe: Recipe) -> float:
    """Phase 2's base LR: ``phases.finetune.lr`` when set, else ``phases.extract.lr x phases.finetune.lr_ratio``."""
    p = recipe.phases
    return p.finetune.lr if p.finetune.lr is not None else p.extract.lr * p.finetune.lr_ratio


def epoch_key(plan: PhasePlan, epoch: int) -> int:
    """The key that seeds one epoch's data order and augmentations (``EpochBatchSampler``,
    ``TransformedDataset``), distinct for every (phase, epoch), the same after a resume."""
    return plan.index * EPOCHS_PER_PHASE_KEY + epoch


def averaged_phase(recipe: Recipe) -> str | None:
    """The phase the recipe's averager follows, or None without ``[averaging]``."""
    if recipe.averaging is None:
        return None
    if recipe.phases.finetune.epochs > 0:
        return FINETUNE
    return None if recipe.phases.extract.probe else EXTRACT  # one converged probe: nothing to average


def uses_feature_cache(recipe: Recipe, plan: PhasePlan) -> bool:
    return plan.name == EXTRACT and recipe.phases.extract.cache_features


# -- which parameters train, and the BatchNorm mode ----------------------------------------------
def freeze_backbone(model: Classifier) -> None:
    """Phase 1: no gradients anywhere in the backbone, BatchNorm in eval mode; the head trains."""
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    for p in model.head.parameters():
        p.requires_grad_(True)
    model.bn_eval = True


def unfreeze_backbone(model: Classifier, policy: str, bn: str = "eval") -> list[nn.Parameter]:
    """Phase 2: unfreeze ``all``, ``none`` or ``last:K`` stages; returns the unfrozen parameters."""
    freeze_backbone(model)
    if policy == "none":
        chosen: list[nn.Module] = []
    elif policy == "all":
        chosen = [model.backbone]
    else:
        k = int(policy.split(":", 1)[1])
        stages = model.stages()
        if k > len(stages):
            raise RecipeError(
                f"phases.finetune.unfreeze: last:{k} asks for more stages than the backbone has ({len(stages)});"
                f' use last:{len(stages)} or "all"'
            )
        chosen = stages[-k:]
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in chosen:
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                p.requires_grad_(True)
                params.append(p)
    model.bn_eval = bn == "eval"  # Classifier.train() keeps BatchNorm in eval mode while this holds
    return params


def configure_phase(model: Classifier, plan: PhasePlan) -> None:
    """Set requires_grad and the BatchNorm mode for a phase."""
    if plan.name == EXTRACT:
        freeze_backbone(model)
    else:
        unfreeze_backbone(model, plan.unfreeze, plan.bn)


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# -- the optimizer and schedule of a phase --------------------------------------------------------
def prepare_phase(model: Classifier, plan: PhasePlan, train: TrainConfig) -> torch.optim.Optimizer:
    """Freeze or unfreeze for ``plan``, then the optimizer over the trainable parameters at the
    phase's LR (its parameter groups: ``optim.param_groups``; per backbone stage under layer decay)."""
    configure_phase(model, plan)
    stages = model.stages() if plan.layer_decay < 1.0 else None
    return optim.build_optimizer(model, plan.lr, train, layer_decay=plan.layer_decay, stages=stages)


@dataclass
class PhaseSetup:
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    steps_per_epoch: int


def start_phase(model: Classifier, plan: PhasePlan, train: TrainConfig, runtime: Runtime, steps_per_epoch: int) -> PhaseSetup:
    """``prepare_phase``, then the per-step cosine schedule (warmup, cycles) and, under fp16, a
    gradient scaler."""
    optimizer = prepare_phase(model, plan, train)
    total = plan.epochs * steps_per_epoch
    scheduler = optim.cosine_with_warmup(optimizer, total, int(round(plan.warmup_epochs * steps_per_epoch)), plan.cycles)
    scaler = torch.amp.GradScaler("cuda") if runtime.uses_scaler else None
    return PhaseSetup(optimizer, scheduler, scaler, steps_per_epoch)


# -- what a training step sees ---------------------------------------------------------------------
class HeadOnly(nn.Module):
    """The classifier's dropout + head as a module of its own (what phase 1 trains on features)."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.dropout, self.head = model.dropout, model.head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))


def phase_module(model: Classifier, cached: bool) -> nn.Module:
    """What a training step calls: the head on cached features, else the whole model."""
    return HeadOnly(model) if cached else model


def step_settings(prepared: Prepared, cached: bool, class_weights: np.ndarray | None) -> StepSettings:
    """Loss and augmentation settings of a step; batch augmentations mix images, so not on cached features."""
    r = prepared.recipe
    return StepSettings(
        num_classes=len(prepared.splits.classes),
        label_smoothing=r.train.label_smoothing,
        batch_augs=() if cached else prepared.batch_augs,
        grad_clip=r.train.grad_clip,
        class_weights=weights_tensor(class_weights, prepared.runtime.device),
    )


class TrainingBatches:
    """The training split as every phase sees it: shuffled per ``epoch_key``, augmented per
    (seed, key, index), sharded across ranks; or the cached features' view of the epoch."""

    def __init__(self, prepared: Prepared, dist: DistContext | None = None) -> None:
        r, dist = prepared.recipe, dist or DistContext()
        self.dataset = TransformedDataset(prepared.splits.train, prepared.train_transform, seed=r.seed)
        self.sampler = EpochBatchSampler(len(self.dataset), r.data.batch_size, shuffle=True, seed=r.seed,
                                         rank=dist.rank, world_size=dist.world_size)
        self.loader = make_loader(self.dataset, self.sampler, r.data.num_workers, prepared.runtime.device.type == "cuda")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.sampler.batches())

    def __len__(self) -> int:
        """Batches left in the current epoch."""
        return len(self.sampler)

    def epoch(self, plan: PhasePlan, epoch: int, start_step: int = 0, cache: FeatureCache | None = None) -> Iterable[Any]:
        key = epoch_key(plan, epoch)
        self.sampler.set_epoch(key, start_step)
        self.dataset.set_epoch(key)
        return cache.batches(self.sampler, view=epoch) if cache is not None else self.loader

    def endless(self, plan: PhasePlan, cache: FeatureCache | None = None) -> Iterator[Any]:
        """Epoch after epoch of ``plan``, in the engine's order."""
        epoch = 0
        while True:
            yield from self.epoch(plan, epoch, cache=cache)
            epoch += 1


def phase1_caches(
    prepared: Prepared, backbone: nn.Module, log: Callable[[str], None], dist: DistContext | None = None
) -> tuple[FeatureCache | None, FeatureCache | None]:
    """Train and validation feature caches for phase 1, or ``(None, None)`` when the recipe turns
    the cache off. ``cache_views = 1`` stores the evaluation transform's features (exact); K > 1
    stores K seeded training augmentations per image, epoch e training on view e mod K."""
    recipe = prepared.recipe
    cfg = recipe.phases.extract
    if not cfg.cache_features:
        return None, None
    if prepared.batch_augs:
        log("  batch augmentations apply from phase 2 (phase 1 trains on cached features;"
            " set phases.extract.cache_features = false to mix images in phase 1 too)")
    size = recipe.data.eval_batch_size or recipe.data.batch_size * 2
    workers = recipe.data.num_workers
    exact = cfg.cache_views == 1
    train = FeatureCache.compute(
        backbone, prepared.splits.train, prepared.probe_preprocessing if exact else prepared.train_transform,
        prepared.runtime, batch_size=size, num_workers=workers, views=cfg.cache_views,
        seed=None if exact else recipe.seed, desc="train features", dist=dist, memory_mb=cfg.feature_cache_mb,
    )
    val = None
    if prepared.splits.val is not None:
        val = FeatureCache.compute(backbone, prepared.splits.val, prepared.probe_preprocessing, prepared.runtime,
                                   batch_size=size, num_workers=workers, desc="val features", dist=dist, memory_mb=cfg.feature_cache_mb)
    kind = f"{prepared.probe_preprocessing.image_size} px evaluation transform" if exact else f"{cfg.cache_views} augmented views"
    mb = train.features.numel() * 4 / 2**20
    where = f"; {mb:.0f} MB memory-mapped on disk (phases.extract.feature_cache_mb)" if train.on_disk else ""
    log(f"  cached {len(train)} train features ({kind}) for phase 1{where}")
    return train, val


def fit_head(prepared: Prepared, model: Classifier, plan: PhasePlan, cache: FeatureCache | None, log: Callable[[str], None]) -> None:
    """Phase 1 as the trainer runs it (its epochs, schedule, batches and loss; on ``cache`` when
    given), without a run directory, checkpoints or evaluation: the head phase 2 starts from."""
    if plan.epochs == 0:
        return
    recipe, runtime = prepared.recipe, prepared.runtime
    weights = recipe_class_weights(recipe, prepared.splits.train.targets, prepared.splits.classes)
    if recipe.phases.extract.probe and cache is not None:
        configure_phase(model, plan)
        fit = fit_probe_head(prepared, model, cache, weights)
        log(f"fitted the head first, as phase extract does (logistic probe, C = {fit.C:g})")
        return
    batches = TrainingBatches(prepared)
    setup = start_phase(model, plan, recipe.train, runtime, batches.steps_per_epoch)
    settings = step_settings(prepared, cache is not None, weights)
    forward = phase_module(model, cache is not None)
    log(f"training the head first, as phase extract does ({plan.epochs} epochs at lr {plan.lr:g})")
    for epoch in range(plan.epochs):
        stats = train_epoch(model, forward, batches.epoch(plan, epoch, cache=cache), setup.optimizer, setup.scheduler, runtime,
                            settings, setup.scaler, where=f"head, epoch {epoch + 1}/{plan.epochs}", total=len(batches))
    log(f"  head after phase extract: loss {stats['loss']:.4f}, train acc {stats['acc']:.3f}")


def fit_probe_head(prepared: Prepared, model: Classifier, cache: FeatureCache, class_weights: np.ndarray | None) -> ProbeFit:
    """Phase 1 as a converged probe: fit the head on the cached training features (every view),
    with the probe's own label smoothing (``phases.extract.label_smoothing``) and the class weights, L2 strength by cross-validation (or
    ``phases.extract.C``); the head's weights are set in place."""
    recipe = prepared.recipe
    cfg = recipe.phases.extract
    if not cache.all_finite():  # what the SGD head would meet as a NaN loss
        raise NonFiniteLossError(
            "phase extract, the probe: the backbone's features hold NaN or infinite values, so the loss is nan; check the"
            " backbone's weights and the data"
        )
    weights = None if class_weights is None else torch.as_tensor(class_weights)
    blocks = readout_blocks(model.backbone)  # what the probe may scale as a whole
    fit = fit_probe(
        cache.features, cache.targets, len(prepared.splits.classes), label_smoothing=cfg.label_smoothing,
        class_weights=weights, Cs=DEFAULT_CS if cfg.C is None else (cfg.C,), folds=cfg.cv_folds, seed=recipe.seed,
        blocks=blocks,
    )
    if prepared.unlabeled is not None:
        fit = refit_with_pseudo_labels(
            fit, cache.features, cache.targets, unlabeled_features(prepared, model.backbone), prepared.splits.classes,
            threshold=cfg.pseudo_label_threshold, weight=cfg.pseudo_label_weight, label_smoothing=cfg.label_smoothing,
            class_weights=weights, copies_left_out=prepared.unlabeled_copies, blocks=blocks,
        )
    with torch.no_grad():
        model.head.weight.copy_(fit.weight.to(model.head.weight))
        model.head.bias.copy_(fit.bias.to(model.head.bias))
    return fit
