"""Which recipe settings each task kind (``task``) takes. A single-label run takes them all; a
multi-label run (``task = "multilabel"``, ``engine/multilabel``) reads a CSV manifest, fits phase 1
as a one-vs-rest probe, fine-tunes with binary cross-entropy and chooses its final weights and
thresholds on validation. What it does not do yet is refused here, when the recipe is read, in one
line naming the key and what to set instead, rather than silently ignored minutes into a run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .recipe import Recipe

SINGLE, MULTILABEL = "single", "multilabel"  # ``task``: one class per image (the default), or a set of labels
# what a multi-label recipe or run can go through, for the commands that refuse one
MULTILABEL_COMMANDS = "finetune, validate, evaluate, predict, export, report, runs, sweep and compare take multi-label ones"
WHY = 'task = "multilabel"'

# (the setting, whether the recipe asks for something a multi-label run does not do, what to set)
_REFUSED: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("data.unknown", lambda r: r.data.unknown is not None, "remove it (rejection of unknown images is single-label)"),
    ("data.unlabeled", lambda r: r.data.unlabeled is not None, "remove it (pseudo-labels are single-label)"),
    ("train.class_weights", lambda r: r.train.class_weights != "none",
     'remove it; multilabel.pos_weight = "balanced" weighs each label\'s positives'),
    ("train.final", lambda r: r.train.final in ("best", "ensemble"), 'use "auto" (the best on validation mAP) or "last"'),
    ("train.folds", lambda r: isinstance(r.train.folds, int) and r.train.folds > 1,
     'remove it; the final weights are chosen on the validation split'),
    ("train.calibrate", lambda r: r.train.calibrate == "always", "remove it; each label's threshold is fitted on validation"),
    ("train.early_stopping", lambda r: r.train.early_stopping is not None, "remove it"),
    ("train.checkpoint_every_steps", lambda r: r.train.checkpoint_every_steps > 0, "remove it (a multi-label run is not resumable yet)"),
    ("train.keep_checkpoints", lambda r: r.train.keep_checkpoints > 0, "remove it"),
    ("train.tensorboard", lambda r: r.train.tensorboard, "remove it"),
    ("phases.extract.solver", lambda r: r.phases.extract.solver == "sgd" or not r.phases.extract.cache_features,
     'phase 1 is a probe on cached features: leave solver "auto" and cache_features = true'),
    ("phases.extract.cache_views", lambda r: r.phases.extract.cache_views != 1, "remove it (the probe reads one view)"),
    ("phases.finetune.cycles", lambda r: r.phases.finetune.cycles != 1, "remove it"),
)


def with_task_defaults(recipe: "Recipe") -> "Recipe":
    """``recipe`` with its task's own defaults where they differ from a single-label run's:
    a multi-label run's ``train.final`` is ``"auto"`` unless set (the ensemble is single-label)."""
    if recipe.task == MULTILABEL and "final" not in recipe.train.model_fields_set:
        recipe.train.final = "auto"
    return recipe


def task_refusal(recipe: "Recipe") -> str | None:
    """Why the recipe's settings do not fit its task, in one line; None when they do."""
    if recipe.task != MULTILABEL:
        if recipe.multilabel is not None:
            return f'[multilabel] is for {WHY}: set task = "multilabel", or remove [multilabel]'
        if recipe.data.label_separator != ";":
            return f'data.label_separator is for {WHY}: set task = "multilabel", or remove data.label_separator'
        return None
    if recipe.data.source != "csv":
        return (f'data.source: {WHY} reads a CSV manifest (path,label[,split], each label cell listing the image\'s labels'
                f' separated by {recipe.data.label_separator!r}); set data.source = "csv" and data.root = the CSV file')
    if recipe.data.root is None:
        return f'data.root: {WHY} reads a CSV manifest; set data.root = "path/to/labels.csv"'
    for key, refused, fix in _REFUSED:
        if refused(recipe):
            return f"{key}: not available with {WHY}; {fix}"
    return None
