"""Stage 3: the engine, not a microbenchmark. Each backbone through ``transferkit finetune``
(decode-once cache -> pinned memory -> GPU, the real loop, metrics.jsonl and checkpoints
written) on flowers12's training images replicated for a steady state; then the same loader
iterated without a model, so stage 3 against stage 2 names the bottleneck."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from transferkit.data.loaders import make_loader
from transferkit.engine.rundir.run_dir import RunDir
from transferkit.engine.prepare import prepare
from transferkit.engine.training.phases import TrainingBatches
from transferkit.recipe_loading import load_recipe

from .common import (Settings, backbone_name, finetune_argv, fresh_dir, read_summary, replicated_root, run_cli,
                     synchronize)


def engine_overrides(settings: Settings, key: str, root: Path) -> dict[str, str]:
    """Random init (speed only), no validation split (every image trains), BatchNorm in training
    mode like stage 2's step, one cached extract epoch (the engine's feature extraction)."""
    return {
        "data.root": str(root), "backbone.name": backbone_name(key), "backbone.weights": "none",
        "data.image_size": str(settings.image_size), "data.batch_size": str(settings.batch), "data.val_fraction": "0",
        "data.num_workers": str(settings.engine_workers), "phases.extract.epochs": "1",
        "phases.finetune.epochs": str(settings.engine_epochs), "phases.finetune.bn": "train",
        "phases.finetune.warmup_epochs": "0",
    }


def engine_throughput(settings: Settings, key: str, done: dict[str, Any]) -> dict[str, Any]:
    """The finetune phase's images/s from metrics.jsonl (the first epoch, with its warm-up,
    left out where there are more), the feature cache's, and the loader's alone."""
    overrides = engine_overrides(settings, key, replicated_root(settings))
    run = fresh_dir(Path(settings.workdir) / f"engine-{key}")
    started = time.perf_counter()
    run_cli(finetune_argv(overrides, run))
    wall = time.perf_counter() - started
    epochs = [r for r in RunDir(run).read_metrics() if r.get("kind") == "epoch" and r["phase"] == "finetune"]
    steady = epochs[1:] or epochs
    summary = read_summary(run)
    extract = summary["phases"]["extract"]
    train_images = epochs[0]["images"]
    return {
        "backbone": overrides["backbone.name"], "device": summary["device"], "train_images": train_images,
        "batch": settings.batch, "workers": settings.engine_workers, "wall_seconds": wall,
        "train_images_per_second": statistics.median(r["images_per_second"] for r in steady),
        "epoch_images_per_second": [round(r["images_per_second"], 1) for r in epochs],
        "feature_cache_images_per_second": train_images / extract["feature_cache_seconds"],
        "pipeline": input_pipeline(settings, run / "recipe.toml"),
    }


def input_pipeline(settings: Settings, recipe_file: Path) -> dict[str, Any]:
    """The engine's training loader (``phases.TrainingBatches``, as the trainer builds it) with the pinned copy to the device
    and no model: per worker count, the first batch's latency (paid once per phase: workers are
    persistent across epochs) and images/s after it."""
    recipe = load_recipe(recipe_file)
    prepared = prepare(recipe, log=lambda _: None)
    batches_of = TrainingBatches(prepared)
    runtime = prepared.runtime
    out: dict[str, Any] = {}
    for workers in sorted({recipe.data.num_workers, 0}, reverse=True):
        loader = batches_of.loader if workers == recipe.data.num_workers else make_loader(
            batches_of.dataset, batches_of.sampler, workers, runtime.device.type == "cuda")
        batches_of.sampler.set_epoch(1)
        batches_of.dataset.set_epoch(1)
        synchronize()
        started, first, images = time.perf_counter(), None, 0
        batches = iter(loader)
        for i, (inputs, labels) in enumerate(batches):
            runtime.to_device(inputs), labels.to(runtime.device, non_blocking=True)
            if i == 0:
                synchronize()
                first, after_first = time.perf_counter() - started, time.perf_counter()
            else:
                images += labels.numel()
            if i >= settings.pipeline_batches:
                break
        synchronize()
        seconds = time.perf_counter() - after_first
        del batches
        out[str(workers)] = {"first_batch_seconds": first, "images_per_second": images / seconds if images else None,
                             "batches": settings.pipeline_batches}
    return out
