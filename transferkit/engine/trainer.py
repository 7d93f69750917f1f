"""The two phases: extract (backbone frozen, head trains) then finetune (backbone unfrozen by
policy at lr x lr_ratio, BatchNorm in eval mode by default), with checkpoints and resume."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..data.loaders import EpochBatchSampler, TransformedDataset, make_loader
from ..data.sources import ImageSet
from ..models.freezing import freeze_backbone, trainable_parameter_count, unfreeze_backbone
from .feature_cache import FeatureCache
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .loop import StepSettings, predict_probs, train_epoch
from .metrics import classification_metrics
from .optim import build_optimizer, cosine_with_warmup
from .run_dir import PHASE_ORDER, RunDir
from .setup import Prepared

PHASES = ("extract", "finetune")


@dataclass
class PhasePlan:
    name: str
    epochs: int
    lr: float
    warmup_epochs: float
    unfreeze: str = "none"
    bn: str = "eval"


def phase_plans(prepared: Prepared) -> list[PhasePlan]:
    p = prepared.recipe.phases
    return [
        PhasePlan("extract", p.extract.epochs, p.extract.lr, p.extract.warmup_epochs),
        PhasePlan("finetune", p.finetune.epochs, p.extract.lr * p.finetune.lr_ratio, p.finetune.warmup_epochs, p.finetune.unfreeze, p.finetune.bn),
    ]


def configure_phase(prepared: Prepared, plan: PhasePlan) -> None:
    """Set requires_grad and the BatchNorm mode for a phase."""
    if plan.name == "extract":
        freeze_backbone(prepared.model)
    else:
        unfreeze_backbone(prepared.model, plan.unfreeze, plan.bn)


@dataclass
class Trainer:
    prepared: Prepared
    run: RunDir
    on_step: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        r = self.prepared.recipe
        self.model = self.prepared.model.to(self.prepared.runtime.device)
        if self.prepared.runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_set = TransformedDataset(self.prepared.splits.train, self.prepared.train_transform, seed=r.seed)
        self.sampler = EpochBatchSampler(len(self.train_set), r.data.batch_size, shuffle=True, seed=r.seed)
        self.loader = make_loader(self.train_set, self.sampler, r.data.num_workers, self.prepared.runtime.device.type == "cuda")
        self.best_top1 = -1.0
        self.summary: dict[str, Any] = {"phases": {}}

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, images: ImageSet, desc: str, cached: FeatureCache | None = None) -> dict[str, Any]:
        r = self.prepared.recipe
        sampler = EpochBatchSampler(len(images), r.data.eval_batch_size or r.data.batch_size * 2, shuffle=False)
        self.model.eval()
        if cached is not None:
            batches, forward = cached.batches(sampler), self.model.forward_head
        else:
            dataset = TransformedDataset(images, self.prepared.eval_transform)
            batches, forward = make_loader(dataset, sampler, r.data.num_workers), self.model
        probs, targets = predict_probs(forward, batches, self.prepared.runtime, desc=desc, total=len(sampler))
        metrics = classification_metrics(probs, targets, self.prepared.splits.classes)
        metrics["loss"] = float(-np.log(np.clip(probs[np.arange(len(targets)), targets], 1e-12, None)).mean())
        return metrics

    def _feature_caches(self, plan: PhasePlan) -> tuple[FeatureCache | None, FeatureCache | None]:
        """Phase 1 trains the head on features computed once unless the recipe switched the cache
        off. Batch augmentations mix images, so with the cache they apply in phase 2 only."""
        cfg, prepared = self.prepared.recipe.phases.extract, self.prepared
        if plan.name != "extract" or not cfg.cache_features:
            return None, None
        if prepared.batch_augs:
            self.log("  batch augmentations apply from phase 2 (phase 1 trains on cached features;"
                     " set phases.extract.cache_features = false to mix images in phase 1 too)")
        size = prepared.recipe.data.eval_batch_size or prepared.recipe.data.batch_size * 2
        workers = prepared.recipe.data.num_workers
        exact = cfg.cache_views == 1
        train = FeatureCache.compute(
            self.model.backbone, prepared.splits.train,
            prepared.eval_transform if exact else prepared.train_transform, prepared.runtime,
            batch_size=size, num_workers=workers, views=cfg.cache_views,
            seed=None if exact else prepared.recipe.seed, desc="train features",
        )
        val = None
        if prepared.splits.val is not None:
            val = FeatureCache.compute(self.model.backbone, prepared.splits.val, prepared.eval_transform, prepared.runtime,
                                       batch_size=size, num_workers=workers, desc="val features")
        kind = "evaluation transform" if exact else f"{cfg.cache_views} augmented views"
        self.log(f"  cached {len(train)} train features ({kind}) for phase 1")
        return train, val

    # -- checkpoints ---------------------------------------------------------------------------
    def _state(self, phase: str, epoch: int, step: int, optimizer: Any, scheduler: Any, scaler: Any) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "phase": phase,
            "epoch": epoch,
            "step": step,
            "best_top1": self.best_top1,
            "rng": rng_state(),
            "batch_augs": [_state_of(aug) for aug in self.prepared.batch_augs],
            "summary_json": _json(self.summary),
        }

    # -- the phases ----------------------------------------------------------------------------
    def fit(self, resume: dict[str, Any] | None = None) -> dict[str, Any]:
        if resume is not None:
            self.model.load_state_dict(resume["model"])
            self.best_top1 = float(resume["best_top1"])
            self.summary = _unjson(resume["summary_json"])
            self.run.truncate_metrics(resume["phase"], int(resume["epoch"]))
        for index, plan in enumerate(phase_plans(self.prepared)):
            if plan.epochs == 0:
                continue
            if resume is not None and PHASE_ORDER[plan.name] < PHASE_ORDER[resume["phase"]]:
                continue
            here = resume if resume is not None and resume["phase"] == plan.name else None
            self._run_phase(index, plan, here)
            resume = None
        return self.summary

    def _run_phase(self, index: int, plan: PhasePlan, resume: dict[str, Any] | None) -> None:
        prepared, r = self.prepared, self.prepared.recipe
        configure_phase(prepared, plan)
        optimizer = build_optimizer(self.model, plan.lr, r.train)
        steps = len(self.sampler.batches())
        scheduler = cosine_with_warmup(optimizer, plan.epochs * steps, int(round(plan.warmup_epochs * steps)))
        scaler = torch.amp.GradScaler("cuda") if prepared.runtime.uses_scaler else None
        start_epoch, start_step = 0, 0
        phase_info = self.summary["phases"].setdefault(plan.name, {"seconds": 0.0})
        phase_info["trainable_parameters"] = trainable_parameter_count(self.model)
        phase_info["lr"] = plan.lr
        if resume is not None:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            if scaler is not None and resume["scaler"]:
                scaler.load_state_dict(resume["scaler"])
            start_epoch, start_step = int(resume["epoch"]), int(resume["step"])
            set_rng_state(resume["rng"])
            for aug, state in zip(prepared.batch_augs, resume.get("batch_augs", [])):
                if state and hasattr(aug, "load_state_dict"):
                    aug.load_state_dict(state)
            self.log(f"resuming {plan.name} at epoch {start_epoch + 1}, step {start_step}")
        else:
            self.log(
                f"phase {plan.name}: {plan.epochs} epochs, lr {plan.lr:g}, "
                f"{phase_info['trainable_parameters']:,} trainable parameters, BN {'eval' if self.model.bn_eval else 'train'}"
            )
        settings = StepSettings(
            num_classes=len(prepared.splits.classes),
            label_smoothing=r.train.label_smoothing,
            batch_augs=prepared.batch_augs,
            grad_clip=r.train.grad_clip,
        )
        every = r.train.checkpoint_every_steps
        cache_start = time.perf_counter()
        train_cache, val_cache = self._feature_caches(plan)
        if train_cache is not None:
            phase_info["feature_cache_seconds"] = time.perf_counter() - cache_start
            phase_info["seconds"] += phase_info["feature_cache_seconds"]
            settings.batch_augs = ()  # they mix images; the cache holds features
        for epoch in range(start_epoch, plan.epochs):
            offset = start_step

            def after_step(done: dict[str, Any], epoch: int = epoch, offset: int = offset) -> None:
                step = offset + done["step"]
                info = {**done, "phase": plan.name, "epoch": epoch, "step": step, "steps": steps}
                if every and step % every == 0 and step < steps:
                    save_checkpoint(self.run.last_checkpoint, self._state(plan.name, epoch, step, optimizer, scheduler, scaler))
                for callback in self.on_step:
                    callback(info)

            settings.on_step = [after_step]
            self.sampler.set_epoch(_epoch_key(index, epoch), start_step)
            self.train_set.set_epoch(_epoch_key(index, epoch))
            if train_cache is not None:
                forward, batches = self.model.forward_head, train_cache.batches(self.sampler, view=epoch)
            else:
                forward, batches = self.model, self.loader
            stats = train_epoch(
                self.model, forward, batches, optimizer, scheduler, prepared.runtime, settings, scaler,
                where=f"{plan.name} {epoch + 1}/{plan.epochs}", total=len(self.sampler),
            )
            start_step = 0
            record: dict[str, Any] = {
                "kind": "epoch", "phase": plan.name, "epoch": epoch + 1, "base_lr": optimizer.param_groups[0]["initial_lr"],
                "train_loss": stats["loss"], "train_acc": stats["acc"], "seconds": stats["seconds"],
                "images_per_second": stats["images"] / max(stats["seconds"], 1e-9),
            }
            if prepared.splits.val is not None:
                val = self.evaluate(prepared.splits.val, "val", val_cache)
                record.update(val_loss=val["loss"], val_top1=val["top1"], val_macro_f1=val["macro_f1"])
            phase_info["seconds"] += stats["seconds"]
            self.run.append_metrics(record)
            line = f"  {plan.name} epoch {epoch + 1}/{plan.epochs}: loss {stats['loss']:.4f}, train acc {stats['acc']:.3f}"
            if "val_top1" in record:
                line += f", val acc {record['val_top1']:.3f}"
            self.log(line + f" ({stats['seconds']:.1f} s)")
            score = record.get("val_top1", stats["acc"])
            if score >= self.best_top1:
                self.best_top1 = score
                save_checkpoint(self.run.best_checkpoint, {"model": self.model.state_dict(), "phase": plan.name, "epoch": epoch + 1, "top1": score})
            save_checkpoint(self.run.last_checkpoint, self._state(plan.name, epoch + 1, 0, optimizer, scheduler, scaler))
        if prepared.splits.test is not None:
            test = self.evaluate(prepared.splits.test, "test")
            phase_info["test_top1"] = test["top1"]
            self.run.append_metrics({"kind": "test", "phase": plan.name, **{k: v for k, v in test.items() if k != "confusion_matrix"}})
            self.summary["test"] = test
            self.log(f"  {plan.name} test accuracy: {test['top1']:.4f}")


def _state_of(component: Any) -> dict[str, Any]:
    """A component's resumable state (a batch augmentation's generator, say), if it has one."""
    return component.state_dict() if callable(getattr(component, "state_dict", None)) else {}


def _epoch_key(phase_index: int, epoch: int) -> int:
    return phase_index * 100_000 + epoch


def _json(data: Any) -> str:
    import json

    return json.dumps(data)


def _unjson(text: str) -> Any:
    import json

    return json.loads(text)


def resume_state(run: RunDir) -> dict[str, Any]:
    return load_checkpoint(run.last_checkpoint)
