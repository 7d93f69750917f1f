"""Running the two phases of ``phases`` for a run: epochs, evaluation on the validation split,
checkpoints (and resuming from them), the averager, the test figures and the metrics records.
What each phase trains, and how, is ``phases``' business, the probe's fit included
(``phases.fit_probe_head``). The trainer records that fit as phase 1's one epoch and computes its
training loss and accuracy itself (``_fit_probe``, on the cached features), the loss at
``train.label_smoothing`` like an SGD epoch's rather than the probe's own smoothing."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ...data.sources import ImageSet
from ...errors import RunInterrupted
from ...recipe import EXTRACT, FINETUNE
from ..evaluation.predict import Predictions
from ..evaluation.prediction_cache import PredictionCache
from ..final.choice import FINETUNED, PROBE
from ..prepare import Prepared
from ..run_summary import RunSummary
from ..rundir.checkpoint_io import rng_state, save_checkpoint, set_rng_state
from ..rundir.model_files import read_weights, write_prepared_model, write_weights
from ..rundir.run_dir import RunDir
from ..runtime.distributed import DistContext
from ..runtime.stop_signals import StopRequest
from .averaging import RunAverager
from .class_weights import describe_class_weights, recipe_class_weights, weights_tensor
from .early_stopping import EarlyStopper
from .epoch_checkpoints import CheckpointKeeper
from .feature_cache import FeatureCache
from .loop import make_targets, soft_cross_entropy, train_epoch
from .phases import (
    PHASE_ORDER,
    PhasePlan,
    PhaseSetup,
    TrainingBatches,
    averaged_phase,
    fit_probe_head,
    phase1_caches,
    phase_module,
    phase_plans,
    start_phase,
    step_settings,
    trainable_parameter_count,
)
from .trained_run import TrainedRun, predict_images


@dataclass
class PhaseState:
    """What one running phase owns; all of it goes into ``last.pt``."""

    plan: PhasePlan
    setup: PhaseSetup
    averager: RunAverager | None = None
    train_cache: FeatureCache | None = None
    val_cache: FeatureCache | None = None
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None  # what a training step calls
    stopper: EarlyStopper | None = None  # train.early_stopping


@dataclass
class Trainer:
    prepared: Prepared
    run: RunDir
    on_step: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    log: Callable[[str], None] = print
    dist: DistContext = field(default_factory=DistContext)
    stop: StopRequest = field(default_factory=StopRequest)  # SIGINT / SIGTERM asked to stop (``runtime.stop_signals``)

    def __post_init__(self) -> None:
        r, runtime = self.prepared.recipe, self.prepared.runtime
        self.model = self.prepared.model.to(runtime.device)
        if runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.batches = TrainingBatches(self.prepared, self.dist)
        self.keeper = CheckpointKeeper(self.run, r.train.keep_checkpoints)
        self.averager: RunAverager | None = None
        self.summary = RunSummary()
        self.phase1_state: dict[str, torch.Tensor] | None = None  # the model after phase 1 (WiSE-FT's start)
        # each (weights, split)'s predictions, made once: the phases' last ones, then the end of the run's
        self.predictions = PredictionCache()
        self._last_val: Predictions | None = None  # the phase's last validation by the live model, at the evaluation transform
        self.class_weights = recipe_class_weights(r, self.prepared.splits.train.targets, self.prepared.splits.classes)

    @property
    def best_top1(self) -> float:
        return self.keeper.best_score

    # -- evaluation ----------------------------------------------------------------------------
    def predict(
        self, images: ImageSet, desc: str, cached: FeatureCache | None = None, model: nn.Module | None = None, probe: bool = False,
    ) -> Predictions:
        """Predictions of ``model`` (the live one by default) on ``images`` (``predict_images``)."""
        return predict_images(self.prepared, model or self.model, images, desc, dist=self.dist, cached=cached, probe=probe)

    # -- checkpoints ---------------------------------------------------------------------------
    def _state(self, phase: PhaseState, epoch: int, step: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": phase.setup.optimizer.state_dict(),
            "scheduler": phase.setup.scheduler.state_dict(),
            "scaler": phase.setup.scaler.state_dict() if phase.setup.scaler is not None else {},
            "averager": phase.averager.state_dict() if phase.averager is not None else {},
            "phase": phase.plan.name,
            "epoch": epoch,
            "step": step,
            "best_top1": self.keeper.best_score,
            "rng": rng_state(),
            "world_size": self.dist.world_size,  # a resume needs as many processes (``resume.reopen``)
            "batch_augs": [_state_of(aug) for aug in self.prepared.batch_augs],
            "early_stopping": phase.stopper.state_dict() if phase.stopper is not None else {},
            "summary_json": json.dumps(self.summary.to_dict()),
            "recipe_json": json.dumps(self.prepared.recipe.to_dict(), sort_keys=True),
        }

    # -- the phases ----------------------------------------------------------------------------
    def fit(self, resume: dict[str, Any] | None = None) -> TrainedRun:
        """Both phases (from ``resume``, a checkpoint, when given); what they leave for the end of the run."""
        if resume is not None:
            self.model.load_state_dict(resume["model"])
            self.keeper.best_score = float(resume["best_top1"])
            self.summary = RunSummary.from_dict(json.loads(resume["summary_json"]))
            if self.dist.is_main:
                self.run.truncate_metrics(resume["phase"], int(resume["epoch"]))
            if self.run.phase1_weights.is_file():
                self.phase1_state = read_weights(self.run.phase1_weights)
        if self.class_weights is not None:
            splits = self.prepared.splits
            self.log(describe_class_weights(self.class_weights, splits.classes, splits.train.targets))
            self.summary.class_weights = dict(zip(splits.classes, self.class_weights.tolist()))
        for plan in phase_plans(self.prepared.recipe):
            if plan.epochs == 0:
                continue
            if resume is not None and PHASE_ORDER[plan.name] < PHASE_ORDER[resume["phase"]]:
                continue
            self._run_phase(plan, resume if resume is not None and resume["phase"] == plan.name else None)
            resume = None
        return TrainedRun(self.prepared, self.run, self.model, self.averager.module if self.averager is not None else None,
                          self.phase1_state, self.summary, self.predictions, self.best_top1, self.dist, self.stop)

    def _start_phase(self, plan: PhasePlan, resume: dict[str, Any] | None) -> PhaseState:
        prepared, r = self.prepared, self.prepared.recipe
        setup = start_phase(self.model, plan, r.train, prepared.runtime, self.batches.steps_per_epoch)
        optimizer, scheduler, scaler = setup.optimizer, setup.scheduler, setup.scaler
        state = PhaseState(plan, setup)
        self._last_val = None
        if not (plan.name == EXTRACT and r.phases.extract.probe):  # a probe is one converged fit, not epochs
            state.stopper = EarlyStopper.from_recipe(r.train.early_stopping)
        if averaged_phase(r) == plan.name:
            state.averager = self.averager = RunAverager(r, self.model)
        info = self.summary.phase(plan.name)
        info.trainable_parameters, info.lr = trainable_parameter_count(self.model), plan.lr
        if resume is not None:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            if scaler is not None and resume["scaler"]:
                scaler.load_state_dict(resume["scaler"])
            if state.averager is not None and resume.get("averager"):
                state.averager.load_state_dict(resume["averager"])
            if state.stopper is not None and resume.get("early_stopping"):
                state.stopper.load_state_dict(resume["early_stopping"])
            for aug, aug_state in zip(prepared.batch_augs, resume.get("batch_augs", [])):
                if aug_state and hasattr(aug, "load_state_dict"):
                    aug.load_state_dict(aug_state)
            self.log(f"resuming {plan.name} at epoch {int(resume['epoch']) + 1}, step {int(resume['step'])}")
        else:
            self.log(
                f"phase {plan.name}: {plan.epochs} epochs, lr {plan.lr:g}, {info.trainable_parameters:,} trainable"
                f" parameters, BN {'eval' if self.model.bn_eval else 'train'}"
                + (f", averaging: {state.averager.name}" if state.averager else "")
            )
        if plan.name == EXTRACT:
            started = time.perf_counter()
            state.train_cache, state.val_cache = phase1_caches(prepared, self.model.backbone, self.log, self.dist)
            if state.train_cache is not None:
                info.feature_cache_seconds = time.perf_counter() - started
                info.seconds += info.feature_cache_seconds
        state.forward = self._forward_for(state)
        if resume is not None:
            set_rng_state(resume["rng"])  # last: computing caches must not shift the RNG stream
        return state

    def _forward_for(self, state: PhaseState) -> Callable[[torch.Tensor], torch.Tensor]:
        """The phase's module (``phases.phase_module``), wrapped in DistributedDataParallel (built
        after freezing, so it syncs just the trainable parameters) across processes."""
        module = phase_module(self.model, cached=state.train_cache is not None)
        if self.dist.enabled:
            device_ids = [self.prepared.runtime.device.index] if self.prepared.runtime.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)
        if self.prepared.recipe.train.compile:
            module = torch.compile(module)  # after DDP, as PyTorch recommends
        return module

    def _run_phase(self, plan: PhasePlan, resume: dict[str, Any] | None) -> None:
        phase = self._start_phase(plan, resume)
        start_epoch, start_step = (int(resume["epoch"]), int(resume["step"])) if resume else (0, 0)
        if plan.name == EXTRACT and self.prepared.recipe.phases.extract.probe:
            if start_epoch < plan.epochs:
                self._fit_probe(phase)
            self._end_phase(phase)
            return
        settings = step_settings(self.prepared, phase.train_cache is not None, self.class_weights)
        for epoch in range(start_epoch, plan.epochs):
            if phase.stopper is not None and phase.stopper.stopped:
                break
            settings.on_step = [self._step_callback(phase, epoch, start_step)]
            batches = self.batches.epoch(plan, epoch, start_step, cache=phase.train_cache)
            with self.stop.steps():
                stats = train_epoch(
                    self.model, phase.forward, batches, phase.setup.optimizer, phase.setup.scheduler, self.prepared.runtime,
                    settings, phase.setup.scaler, where=f"phase {plan.name}, epoch {epoch + 1}/{plan.epochs}",
                    total=len(self.batches), first_step=start_step,
                )
            start_step = 0
            self._end_epoch(phase, epoch, stats)
            if self.stop.requested:  # asked during the epoch's last step: its end (and last.pt) came first
                raise self._stopped(f"the end of phase {plan.name}, epoch {epoch + 1}")
        self._end_phase(phase)

    def _fit_probe(self, phase: PhaseState) -> None:
        """Phase 1 as one converged fit of the head (``phases.fit_probe_head``), recorded as the
        phase's one epoch: validation figures, the best checkpoint and ``last.pt`` as usual."""
        started = time.perf_counter()
        cache, info = phase.train_cache, self.summary.phases[EXTRACT]
        cfg = self.prepared.recipe.phases.extract
        self.log(f"  fitting the head as a logistic probe on {len(cache) * cache.views} cached features"
                 + (f" (C and scaling by {cfg.cv_folds}-fold cross-validation)" if cfg.C is None else ""))
        fit = fit_probe_head(self.prepared, self.model, cache, self.class_weights)
        loss_sum, weight_sum, correct, rows = 0.0, 0.0, 0, 0
        weights = weights_tensor(self.class_weights, torch.device("cpu"))
        with torch.no_grad():  # in chunks: a large cache's logits are never all in memory at once
            for features, labels in cache.chunks():
                logits = self.model.forward_head(features.to(self.prepared.runtime.device)).float().cpu()
                targets = make_targets(labels, len(self.prepared.splits.classes), self.prepared.recipe.train.label_smoothing)
                chunk_weight = float(targets.sum()) if weights is None else float((targets @ weights.float()).sum())
                loss_sum += soft_cross_entropy(logits, targets, weights).item() * chunk_weight  # the weighted mean's sum
                weight_sum += chunk_weight
                correct += int((logits.argmax(1) == labels).sum())
                rows += len(labels)
        stats = {"loss": loss_sum / weight_sum, "acc": correct / rows, "images": rows, "seconds": time.perf_counter() - started}
        info.probe = fit.summary()
        how = f"C and scaling by {fit.folds}-fold cross-validation" if fit.folds > 1 else "C from the recipe"
        self.log(f"  logistic probe fitted by L-BFGS: C = {fit.C:g}, {fit.scaling} scaling ({how}), {fit.seconds:.1f} s")
        self._end_epoch(phase, phase.plan.epochs - 1, stats, title="extract probe")

    def _step_callback(self, phase: PhaseState, epoch: int, offset: int) -> Callable[[dict[str, Any]], None]:
        every = self.prepared.recipe.train.checkpoint_every_steps

        def after_step(done: dict[str, Any]) -> None:
            step = offset + done["step"]
            if phase.averager is not None:
                phase.averager.update(self.model)
            if every and step % every == 0 and step < phase.setup.steps_per_epoch:
                self._save_last(phase, epoch, step)
            info = {**done, "phase": phase.plan.name, "epoch": epoch, "step": step, "steps": phase.setup.steps_per_epoch}
            for callback in self.on_step:
                callback(info)
            if self.stop.requested and step < phase.setup.steps_per_epoch:
                self._save_last(phase, epoch, step)
                raise self._stopped(f"phase {phase.plan.name}, epoch {epoch + 1}, step {step}")

        return after_step

    def _stopped(self, where: str) -> RunInterrupted:
        """SIGINT / SIGTERM came during a step: ``last.pt`` now holds the run at ``where``."""
        self.log(f"  {self.stop.signal_name}: saved a checkpoint at {where}")
        stopped = RunInterrupted(self.stop.signal_name or "SIGINT")
        stopped.saved_at = where
        return stopped

    def _end_epoch(self, phase: PhaseState, epoch: int, stats: dict[str, float], title: str | None = None) -> None:
        plan, splits = phase.plan, self.prepared.splits
        record: dict[str, Any] = {
            "kind": "epoch", "phase": plan.name, "epoch": epoch + 1, "base_lr": phase.setup.optimizer.param_groups[0]["initial_lr"],
            "train_loss": stats["loss"], "train_acc": stats["acc"], "seconds": stats["seconds"],
            "images_per_second": stats["images"] / max(stats["seconds"], 1e-9),
        }
        if splits.val is not None:
            predictions = self.predict(splits.val, "val", phase.val_cache)
            self._last_val = predictions if phase.val_cache is None else None  # on cached features: not the full forward
            val = predictions.metrics()
            record.update(val_loss=val["loss"], val_top1=val["top1"], val_macro_f1=val["macro_f1"])
        if self.dist.enabled and title is None:  # loss and accuracy over every rank's share of the epoch
            loss_sum, correct, seen = self.dist.sum(stats["loss"] * stats["images"], stats["acc"] * stats["images"], stats["images"])
            stats = {**stats, "loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "images": seen}
            record.update(train_loss=stats["loss"], train_acc=stats["acc"])
        if self.dist.enabled:  # (a probe's epoch: every rank fitted the same head on all the features)
            record["ranks"] = self.dist.world_size
        record["images"] = int(stats["images"])
        if phase.stopper is not None and "val_loss" in record and phase.stopper.update(epoch + 1, record):
            self._stop_early(phase, epoch + 1)
        self.summary.phases[plan.name].seconds += stats["seconds"]
        if self.dist.is_main:
            self.run.append_metrics(record)
        line = f"  {title or f'{plan.name} epoch {epoch + 1}/{plan.epochs}'}: loss {stats['loss']:.4f}, train acc {stats['acc']:.3f}"
        self.log(line + (f", val acc {record['val_top1']:.3f}" if "val_top1" in record else "") + f" ({stats['seconds']:.1f} s)")
        if phase.averager is not None:
            phase.averager.epoch_end(self.model, epoch + 1)
        if self.dist.is_main:
            self.keeper.epoch_end(self.model, plan.name, epoch + 1, record.get("val_top1", stats["acc"]))
        per_cycle = plan.epochs // plan.cycles
        if plan.cycles > 1 and (epoch + 1) % per_cycle == 0 and self.dist.is_main:
            folder = self.keeper.snapshot(self.model, (epoch + 1) // per_cycle, lambda m, f: write_prepared_model(self.prepared, m, f))
            self.log(f"  snapshot of cycle {(epoch + 1) // per_cycle} in {folder}")
        self._save_last(phase, epoch + 1, 0)

    def _stop_early(self, phase: PhaseState, epoch: int) -> None:
        stopper, plan = phase.stopper, phase.plan
        assert stopper is not None and stopper.best is not None
        self.summary.phases[plan.name].early_stopped = {
            "epoch": epoch, "of": plan.epochs, "metric": stopper.metric, "best": stopper.best, "best_epoch": stopper.best_epoch,
        }
        self.log(f"  early stopping: {stopper.metric} has not improved for {stopper.patience} epoch(s) (best {stopper.best:.4f}"
                 f" at epoch {stopper.best_epoch}); phase {plan.name} stops after epoch {epoch} of {plan.epochs}")

    def _save_last(self, phase: PhaseState, epoch: int, step: int) -> None:
        state = self._state(phase, epoch, step)  # on every rank: it draws nothing, but keeps ranks alike
        if self.dist.is_main:
            save_checkpoint(self.run.last_checkpoint, state)

    def _end_phase(self, phase: PhaseState) -> None:
        plan, splits, info = phase.plan, self.prepared.splits, self.summary.phases[phase.plan.name]
        if plan.name == EXTRACT:
            self.phase1_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            if self.dist.is_main:
                write_weights(self.phase1_state, self.run.checkpoints, self.run.phase1_weights.name)
        averager = phase.averager
        if averager is not None:
            fresh_pass = self.batches.epoch(plan, plan.epochs)  # for BN statistics: the epoch after the last
            images = (self.prepared.runtime.to_device(x) for x, _ in fresh_pass)
            if averager.finalize(images, bn_trains=not self.model.bn_eval):
                self.log(f"  {averager.name}: BatchNorm statistics recomputed on the training data")
        if plan.name == FINETUNE and averager is None and self._last_val is not None:
            self.predictions.put(FINETUNED, "val", self._last_val)  # the candidate "finetuned" is the live model
        if splits.test is None:
            return
        predictions = self.predict(splits.test, "test", probe=plan.name == EXTRACT)
        if plan.name == EXTRACT:
            self.predictions.put(PROBE, "test", predictions)  # phase 1's weights at the probe's preprocessing
        test = predictions.metrics()
        info.test_top1 = test["top1"]
        if self.dist.is_main:
            self.run.append_metrics({"kind": "test", "phase": plan.name, **{k: v for k, v in test.items() if k != "confusion_matrix"}})
        self.summary.test = test
        self.log(f"  {plan.name} test accuracy: {test['top1']:.4f}")
        if averager is not None:
            predictions = self.predict(splits.test, f"test ({averager.name})", model=averager.module)
            averaged = predictions.metrics()
            info.test_top1_averaged = averaged["top1"]
            self.summary.test_raw, self.summary.test = test, averaged
            self.summary.averager = averager.name
            if self.dist.is_main:
                self.run.append_metrics({"kind": "test", "phase": plan.name, "weights": averager.name,
                                         **{k: v for k, v in averaged.items() if k != "confusion_matrix"}})
            self.log(f"  {plan.name} test accuracy with {averager.name} weights: {averaged['top1']:.4f}")
        if plan.name == FINETUNE:  # the averager's predictions when averaging, as the final weights are
            self.predictions.put(FINETUNED, "test", predictions)


def _state_of(component: Any) -> dict[str, Any]:
    """A component's resumable state (a batch augmentation's generator, say), if it has one."""
    return component.state_dict() if callable(getattr(component, "state_dict", None)) else {}

