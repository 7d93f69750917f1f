"""``transferkit plan``: what each phase will train, at which learning rates, without training."""

from __future__ import annotations

from typing import Any

from ...recipe import EXTRACT, FINETUNE, Recipe
from ..prepare import build_model, build_splits
from ..training.phases import averaged_phase, phase_plans, prepare_phase, trainable_parameter_count, uses_feature_cache
from .data_checks import counts_table
from .memory_estimate import check_training_memory


def plan_recipe(recipe: Recipe) -> dict[str, Any]:
    """Per phase: epochs, trainable parameters, each optimizer group's LR and weight decay, the
    BatchNorm mode, the augmentations and the averager. Builds the model; reads no image."""
    splits = build_splits(recipe)
    model = build_model(recipe, splits.classes)
    memory = check_training_memory(recipe, model.backbone)  # refused with the estimate when it cannot fit
    phases = []
    for plan in phase_plans(recipe):
        entry: dict[str, Any] = {"phase": plan.name, "epochs": plan.epochs}
        if plan.epochs:
            optimizer = prepare_phase(model, plan, recipe.train)
            cached = uses_feature_cache(recipe, plan)
            entry.update(
                trainable_parameters=trainable_parameter_count(model),
                total_parameters=sum(p.numel() for p in model.parameters()),
                groups=[
                    {"name": g["name"], "lr": g["lr"], "weight_decay": g["weight_decay"], "parameters": sum(p.numel() for p in g["params"])}
                    for g in optimizer.param_groups
                ],
                bn="eval" if model.bn_eval else "train",
                unfreeze=plan.unfreeze if plan.name == FINETUNE else "none (backbone frozen)",
                feature_cache=cached,
                batch_augmentations=[] if cached else [s.name for s in recipe.augment.batch],
                cycles=plan.cycles,
                probe=plan.name == EXTRACT and recipe.phases.extract.probe,
                C=recipe.phases.extract.C,
                layer_decay=plan.layer_decay,
            )
            entry["averager"] = recipe.averaging.name if recipe.averaging and averaged_phase(recipe) == plan.name else None
        phases.append(entry)
    return {
        "classes": len(splits.classes),
        "train_images": len(splits.train),
        "image_augmentations": [s.name for s in recipe.augment.image],
        "stages": len(model.stages()),
        "phases": phases,
        "final": recipe.train.final,
        "early_stopping": recipe.train.early_stopping.model_dump() if recipe.train.early_stopping else None,
        "counts": counts_table(splits),
        "notes": list(splits.notes),
        "memory": memory.describe(),
    }


def format_plan(plan: dict[str, Any]) -> str:
    lines = list(plan["counts"]) + [f"warning: {note}" for note in plan["notes"]]
    lines += [f"{plan['train_images']} training images, {plan['classes']} classes; backbone stages: {plan['stages']};"
             f" image augmentations: {', '.join(plan['image_augmentations']) or 'none'}"]
    for p in plan["phases"]:
        if not p["epochs"]:
            lines.append(f"{p['phase']}: 0 epochs (skipped)")
            continue
        groups = "; ".join(f"{g['name']} {g['parameters']:,} params lr {g['lr']:g} wd {g['weight_decay']:g}" for g in p["groups"])
        lines.append(
            f"{p['phase']}: {p['epochs']} epochs, {p['trainable_parameters']:,} of {p['total_parameters']:,} parameters train"
            f" (unfreeze {p['unfreeze']}), BN {p['bn']}; groups: {groups}"
        )
        extras = []
        if p["probe"]:
            cfg = "C and feature scaling by cross-validation" if p.get("C") is None else f"C = {p['C']:g}"
            extras.append(f"head fitted on cached backbone features as a logistic probe (L-BFGS, {cfg}; the lr above trains nothing here)")
        elif p["feature_cache"]:
            extras.append("head trains on cached backbone features")
        if p["layer_decay"] < 1.0:
            extras.append(f"layer-wise LR decay {p['layer_decay']:g} per stage below the head")
        if p["batch_augmentations"]:
            extras.append("batch augmentations " + ", ".join(p["batch_augmentations"]))
        if p["averager"]:
            extras.append(f"averager {p['averager']}")
        if p["cycles"] > 1:
            extras.append(f"{p['cycles']} cosine cycles with snapshots")
        if extras:
            lines.append("    " + "; ".join(extras))
    if plan.get("memory"):
        lines.append(f"memory: {plan['memory']}")
    lines.append({
        "last": "final weights: the last epoch's",
        "best": "final weights: the best validation epoch's",
        "auto": "final weights: chosen on validation among the phase-1 probe, the fine-tuned model and their interpolations (WiSE-FT)",
    }[plan["final"]])
    stopping = plan["early_stopping"]
    if stopping:
        lines.append(f"early stopping: a phase stops when {stopping['metric']} has not improved for {stopping['patience']} epoch(s)"
                     " (then the final weights are chosen)")
    return "\n".join(lines)
