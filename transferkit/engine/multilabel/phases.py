"""The two phases of a multi-label run, and its one evaluation path.

1. **extract**: the backbone's features of every training image are computed once, at the probe's
   preprocessing (``phase1_caches``, as a single-label run's), and the head is fitted on them as a
   converged one-vs-rest logistic probe (``training.multilabel_probe``: L-BFGS, L2 strength by
   cross-validated binary log-loss on iteratively stratified folds).
2. **finetune**: the backbone (``phases.finetune.unfreeze``) and head train together at the
   phase's learning rate and schedule (``training.phases.start_phase``), BatchNorm in eval mode,
   on binary cross-entropy against the multi-hot targets (``train.label_smoothing`` moves them
   towards 1/2; ``multilabel.pos_weight``). Mixup and CutMix mix the label vectors as they mix
   the images, which is what binary cross-entropy wants of a mixed image."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...data.multilabel_csv import MultiLabelData
from ...data.sources import ImageSet
from ...errors import NonFiniteLossError
from ...models.classifier import Classifier
from ...progress import progress
from ...recipe import FINETUNE
from ..evaluation.multilabel_metrics import mean_average_precision
from ..evaluation.predict import predict
from ..prepare import Prepared
from ..training.averaging import RunAverager
from ..training.feature_cache import FeatureCache
from ..training.loop import SYNC_EVERY, LossTally, backward_and_step, defers_syncs
from ..training.multilabel_probe import DEFAULT_CS, MultiLabelProbeFit, balanced_pos_weight, fit_multilabel_probe
from ..training.phases import TrainingBatches, configure_phase, phase_plans, start_phase


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))).astype(np.float32)


def probabilities(
    prepared: Prepared, model: Classifier, images: ImageSet, desc: str, *, probe: bool = False, cached: FeatureCache | None = None,
) -> np.ndarray:
    """Each label's probability ``[N, L]`` (sigmoid of the model's logits) on ``images``, through the
    evaluation preprocessing (``probe``: the probe's), or the head alone on ``cached`` features."""
    r = prepared.recipe
    preprocess = prepared.probe_preprocessing if probe else prepared.eval_transform
    out = predict(model, images, None if cached is not None else preprocess, runtime=prepared.runtime,
                  batch_size=r.data.eval_batch_size or r.data.batch_size * 2, num_workers=r.data.num_workers,
                  features=cached, desc=desc)
    assert out.logits is not None  # one view per image: the logits are kept
    return sigmoid(out.logits)


def pos_weight(prepared: Prepared, data: MultiLabelData) -> torch.Tensor | None:
    """``multilabel.pos_weight = "balanced"``: negatives over positives per label, on the training split."""
    config = prepared.recipe.multilabel
    if config is None or config.pos_weight == "none":
        return None
    return balanced_pos_weight(data.targets(prepared.splits.train.targets)).float()


def fit_probe(prepared: Prepared, data: MultiLabelData, model: Classifier, cache: FeatureCache,
              log: Callable[[str], None]) -> MultiLabelProbeFit:
    """Phase 1: the one-vs-rest probe on the cached training features, set as the head in place."""
    cfg = prepared.recipe.phases.extract
    configure_phase(model, phase_plans(prepared.recipe)[0])
    if not cache.all_finite():
        raise NonFiniteLossError("phase extract, the probe: the backbone's features hold NaN or infinite values; check the"
                                 " backbone's weights and the data")
    weights = pos_weight(prepared, data)
    log(f"  fitting the head as {len(data.labels)} one-vs-rest logistic probes on {len(cache)} cached features"
        + (f" (C by {cfg.cv_folds}-fold cross-validation)" if cfg.C is None else ""))
    fit = fit_multilabel_probe(cache.features[0], data.targets(cache.targets.numpy()), Cs=DEFAULT_CS if cfg.C is None else (cfg.C,),
                               folds=cfg.cv_folds, seed=prepared.recipe.seed, pos_weight=weights, label_names=data.labels)
    with torch.no_grad():
        model.head.weight.copy_(fit.weight.to(model.head.weight))
        model.head.bias.copy_(fit.bias.to(model.head.bias))
    how = f"C by {fit.folds}-fold cross-validation" if fit.folds > 1 else "C from the recipe"
    log(f"  one-vs-rest probe fitted by L-BFGS: C = {fit.C:g} ({how}), {fit.seconds:.1f} s")
    return fit


Known = dict[tuple[str, str], np.ndarray]  # (candidate, split) -> probabilities already predicted in this run


def finetune(
    prepared: Prepared, data: MultiLabelData, model: Classifier, log: Callable[[str], None],
    on_epoch: Callable[[dict[str, Any]], None], known: Known | None = None,
) -> tuple[float, Classifier | None]:
    """Phase 2, epoch after epoch; ``on_epoch`` gets each epoch's record. Returns its seconds and,
    with ``[averaging]``, the averaged weights (EMA, SWA: they follow the live model step by step,
    as in a single-label run; the live model's validation figures are each epoch's). Without an
    averager the last epoch's validation probabilities go into ``known`` as the fine-tuned model's."""
    r, runtime = prepared.recipe, prepared.runtime
    plan = next(p for p in phase_plans(r) if p.name == FINETUNE)
    batches = TrainingBatches(prepared)
    setup = start_phase(model, plan, r.train, runtime, batches.steps_per_epoch)
    matrix = torch.as_tensor(data.matrix, dtype=torch.float32)
    weights = pos_weight(prepared, data)
    weights = None if weights is None else weights.to(runtime.device)
    smoothing = r.train.label_smoothing
    averager = RunAverager(r, model) if r.averaging is not None else None
    log(f"phase finetune: {plan.epochs} epochs, lr {plan.lr:g}, binary cross-entropy"
        + (", balanced positive weights" if weights is not None else "") + f", BN {'eval' if model.bn_eval else 'train'}"
        + (f", averaging: {averager.name}" if averager is not None else ""))
    seconds, sync_every = 0.0, SYNC_EVERY if defers_syncs(runtime) else 1  # each read waits for the GPU
    for epoch in range(plan.epochs):
        started, seen = time.perf_counter(), 0
        model.train()
        where = f"phase finetune, epoch {epoch + 1}/{plan.epochs}"
        tally = LossTally(runtime.device, where, kept="")
        bar = progress(batches.epoch(plan, epoch), total=len(batches), desc=where)
        for step, (inputs, rows) in enumerate(bar):
            inputs = runtime.to_device(inputs)
            targets = matrix[rows].to(runtime.device)
            if smoothing > 0:
                targets = targets * (1.0 - smoothing) + smoothing / 2
            for aug in prepared.batch_augs:
                inputs, targets = aug(inputs, targets)
            with runtime.autocast():
                logits = model(inputs)
            loss = F.binary_cross_entropy_with_logits(logits.float(), targets, pos_weight=weights)
            tally.add(loss, len(rows), step)
            seen += len(rows)
            if (step + 1) % sync_every == 0:  # before the step on the CPU; on CUDA at most SYNC_EVERY steps late
                tally.check()
                bar.set_postfix(loss=f"{tally.sum.item() / seen:.4f}")
            backward_and_step(loss, setup.optimizer, setup.scaler, r.train.grad_clip)
            setup.scheduler.step()
            if averager is not None:
                averager.update(model)
        tally.check()
        bar.close()
        elapsed = time.perf_counter() - started
        seconds += elapsed
        record: dict[str, Any] = {"kind": "epoch", "phase": FINETUNE, "epoch": epoch + 1, "train_loss": tally.sum.item() / max(seen, 1),
                                  "seconds": elapsed, "images": seen}
        if prepared.splits.val is not None:
            val_probs = probabilities(prepared, model, prepared.splits.val, "val")
            record.update(val_scores(prepared, data, model, prepared.splits.val, "val", probs=val_probs))
            if known is not None and averager is None:
                known[("finetuned", "val")] = val_probs
        on_epoch(record)
        shown = f", val mAP {record['val_macro_map']:.4f}" if record.get("val_macro_map") is not None else ""
        log(f"  finetune epoch {epoch + 1}/{plan.epochs}: loss {record['train_loss']:.4f}{shown} ({elapsed:.1f} s)")
        if averager is not None:
            averager.epoch_end(model, epoch + 1)
    if averager is None:
        return seconds, None
    fresh = (runtime.to_device(x) for x, _ in batches.epoch(plan, plan.epochs))  # BatchNorm statistics, when BN trains
    if averager.finalize(fresh, bn_trains=not model.bn_eval):
        log(f"  {averager.name}: BatchNorm statistics recomputed on the training data")
    return seconds, averager.module


def val_scores(prepared: Prepared, data: MultiLabelData, model: Classifier, images: ImageSet, desc: str, *, probe: bool = False,
               cached: FeatureCache | None = None, probs: np.ndarray | None = None) -> dict[str, float | None]:
    """Macro mAP and mean binary log-loss of ``model`` on ``images`` (``probs``: its probabilities
    there, when already predicted), for the metrics record."""
    if probs is None:
        probs = probabilities(prepared, model, images, desc, probe=probe, cached=cached)
    targets = data.targets(images.targets)
    macro = mean_average_precision(probs, targets)["macro"]
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    loss = float(-(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean())
    return {"val_macro_map": None if np.isnan(macro) else float(macro), "val_loss": loss}
