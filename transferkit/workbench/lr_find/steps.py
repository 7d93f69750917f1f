"""Running ``transferkit lr-find`` on a recipe: one phase set up as the engine sets it up
(``engine.training.phases``), then one training step per learning rate of the range test (``range_test``),
and the plot and data written (``plot_files``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ...engine.prepare import Prepared, prepare
from ...engine.training.class_weights import recipe_class_weights
from ...engine.training.loop import backward_and_step, make_targets, soft_cross_entropy
from ...engine.training.phases import TrainingBatches, fit_head, phase1_caches, phase_module, phase_plans, prepare_phase, step_settings
from ...errors import RecipeError
from ...recipe import EXTRACT, FINETUNE, PHASES, Recipe
from ...recipe_loading import RecipeSource, load_recipe
from .plot_files import default_folder, write_outputs
from .range_test import LRFindResult, exponential_lrs, range_test, suggest


def lr_find(
    recipe: RecipeSource,
    *,
    phase: str = "extract",
    steps: int = 100,
    start: float = 1e-7,
    end: float = 10.0,
    output: str | Path | None = None,
    dataset: Any = None,
    val_dataset: Any = None,
    write: bool = True,
    log: Callable[[str], None] | None = print,
    **overrides: Any,
) -> LRFindResult:
    """Run the range test for ``phase`` and (``write=True``) write the plot and the data. The
    recipe is a TOML path, dict or Recipe; ``overrides`` as in ``finetune`` (``data__root=...``)."""
    resolved = load_recipe(recipe, overrides, check_data=dataset is None)
    check_options(phase, steps, start, end)
    say = log or (lambda _m: None)
    prepared = prepare(resolved, dataset, val_dataset, log=say)
    step, desc = phase_step(prepared, phase, say)
    trace = range_test(step, exponential_lrs(start, end, steps), desc=desc)
    suggestion, minimum, method = suggest(trace)
    key, value = _recipe_key(resolved, phase, suggestion)
    result = LRFindResult(phase, trace, suggestion, minimum, method, key, value, unused=_unused(resolved, phase, value))
    if write:
        result.folder = write_outputs(result, Path(output) if output else default_folder(resolved), resolved)
    return result


def check_options(phase: str, steps: int, start: float, end: float) -> None:
    if phase not in PHASES:
        raise RecipeError(f"--phase {phase}: must be extract or finetune")
    if steps < 5:
        raise RecipeError(f"--steps {steps}: a range test needs at least 5 steps (100 is usual)")
    if not (start > 0 and end > start):
        raise RecipeError(f"--start {start:g} --end {end:g}: need 0 < start < end, e.g. --start 1e-7 --end 10")


def _recipe_key(recipe: Recipe, phase: str, lr: float) -> tuple[str, float]:
    if phase == EXTRACT:
        return "phases.extract.lr", lr
    if recipe.phases.finetune.lr is not None:
        return "phases.finetune.lr", lr
    return "phases.finetune.lr_ratio", lr / recipe.phases.extract.lr


def _unused(recipe: Recipe, phase: str, lr: float) -> str:
    """With phase 1 as the probe (L-BFGS), ``phases.extract.lr`` trains nothing: say so, and where
    the LR that matters is found."""
    if phase != EXTRACT or not recipe.phases.extract.probe:
        return ""
    return (f"not set: phases.extract.lr = {lr:.2g} is the head's LR with phases.extract.solver = \"sgd\"; this recipe's"
            " phase 1 is the logistic probe (L-BFGS), which does not use it. For the fine-tuning LR run"
            " transferkit lr-find RECIPE --phase finetune")


def phase_step(prepared: Prepared, phase: str, log: Callable[[str], None]) -> tuple[Callable[[float], float], str]:
    """The model set up for ``phase`` as the engine sets it up (for ``finetune``: after phase 1
    has trained the head), and a function doing one training step at a given base LR, every
    parameter group keeping its LR ratio to the base."""
    recipe, runtime = prepared.recipe, prepared.runtime
    model = prepared.model.to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    extract, finetune = phase_plans(recipe)
    prepare_phase(model, extract, recipe.train)
    cache = phase1_caches(prepared, model.backbone, log)[0] if phase == EXTRACT or extract.epochs else None
    if phase == FINETUNE:
        fit_head(prepared, model, extract, cache, log)
        cache = None
    plan = extract if phase == EXTRACT else finetune
    optimizer = prepare_phase(model, plan, recipe.train)
    ratios = [group["lr"] / plan.lr for group in optimizer.param_groups]
    forward = phase_module(model, cached=cache is not None)
    batches = TrainingBatches(prepared).endless(plan, cache)
    weights = recipe_class_weights(recipe, prepared.splits.train.targets, prepared.splits.classes)
    settings = step_settings(prepared, cache is not None, weights)
    scaler = torch.amp.GradScaler("cuda") if runtime.uses_scaler else None
    log(f"lr-find {plan.name}: {sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters,"
        f" BN {'eval' if model.bn_eval else 'train'}" + (", head on cached features" if cache is not None else ""))

    def step(lr: float) -> float:
        for group, ratio in zip(optimizer.param_groups, ratios):
            group["lr"] = lr * ratio
        inputs, labels = next(batches)
        inputs, labels = runtime.to_device(inputs), labels.to(runtime.device)
        targets = make_targets(labels, settings.num_classes, settings.label_smoothing)
        for aug in settings.batch_augs:
            inputs, targets = aug(inputs, targets)
        model.train()
        with runtime.autocast():
            logits = forward(inputs)
        loss = soft_cross_entropy(logits, targets, settings.class_weights)
        if not torch.isfinite(loss):
            return loss.item()
        backward_and_step(loss, optimizer, scaler, settings.grad_clip)
        return loss.item()

    return step, f"lr-find {plan.name}"
