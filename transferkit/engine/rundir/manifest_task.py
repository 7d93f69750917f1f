"""What a run's model answers, as its ``manifest.json`` says (issue 26): one class per image
(``"single"``, every run written before multi-label; no ``task`` key) or a set of labels per image
(``"task": "multilabel"``).

A multi-label manifest also holds the per-label thresholds chosen on validation::

    "task": "multilabel",
    "thresholds": {"rule": "f1", "values": [0.41, 0.37, ...]}   # one per class, in "classes" order

(``rule``: how they were chosen, "f1" or e.g. "precision 0.9"). Each label's probability is
``sigmoid(logit)``, not a softmax, and the label is predicted where the probability reaches its
threshold. A multi-label manifest whose thresholds are missing or do not fit its classes is refused
in one line naming the file: without them no label set can be answered, and guessing 0.5 would
silently answer other sets than the run measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import CorruptFileError
from ...recipe_tasks import MULTILABEL, SINGLE  # the recipe's names for the two tasks

TASK_KEY = "task"
THRESHOLDS_KEY = "thresholds"

TASKS = (SINGLE, MULTILABEL)
ACTIVATIONS = {SINGLE: "softmax", MULTILABEL: "sigmoid"}  # how a task's logits become probabilities


def task_of(manifest: Mapping[str, Any], where: str | Path = "manifest.json") -> str:
    """``"single"`` or ``"multilabel"``; a manifest without ``task`` is single-label. Another value
    is one line naming ``where`` (the manifest's file)."""
    task = manifest.get(TASK_KEY, SINGLE)
    if task not in TASKS:
        raise CorruptFileError(
            f'{where}: "task" is {task!r}, which this transferkit does not know ("single" or "multilabel");'
            " restore the run's own manifest.json, or upgrade transferkit"
        )
    return str(task)


def activation_of(manifest: Mapping[str, Any], where: str | Path = "manifest.json") -> str:
    """``"softmax"`` (single-label) or ``"sigmoid"`` (multi-label): how the run's logits become probabilities."""
    return ACTIVATIONS[task_of(manifest, where)]


def thresholds_of(manifest: Mapping[str, Any], where: str | Path = "manifest.json") -> np.ndarray:
    """A multi-label manifest's per-label thresholds, float64 ``[len(classes)]`` in ``classes``
    order; one line naming ``where`` and the fix when they are missing, of another length, or not
    numbers in [0, 1]. A single-label manifest has none (a ``ValueError``: a caller's mistake)."""
    if task_of(manifest, where) != MULTILABEL:
        raise ValueError(f"{where}: a single-label manifest has no per-label thresholds")
    classes = manifest.get("classes") or []
    entry = manifest.get(THRESHOLDS_KEY)
    values = entry.get("values") if isinstance(entry, Mapping) else None
    problem = _problem(values, len(classes))
    if problem:
        raise CorruptFileError(
            f'{where}: a multilabel manifest needs "thresholds": {{"rule": ..., "values": [one number in [0, 1] per class,'
            f" {len(classes)} in the order of \"classes\"]}}; {problem}: restore the run's own manifest.json, or train it again"
        )
    return np.asarray(values, dtype=np.float64)


def threshold_rule(manifest: Mapping[str, Any]) -> str | None:
    """How a multi-label run's thresholds were chosen ("f1", "precision 0.9", ...), if it says."""
    entry = manifest.get(THRESHOLDS_KEY)
    rule = entry.get("rule") if isinstance(entry, Mapping) else None
    return None if rule is None else str(rule)


def multilabel_entries(values: Sequence[float] | np.ndarray, rule: str) -> dict[str, Any]:
    """The manifest keys of a multi-label run, for its writer to merge into ``manifest.json``:
    ``{"task": "multilabel", "thresholds": {"rule": rule, "values": [...]}}`` (plain floats)."""
    floats = [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]
    problem = _problem(floats, len(floats))
    if problem:
        raise ValueError(f"thresholds: {problem}")
    return {TASK_KEY: MULTILABEL, THRESHOLDS_KEY: {"rule": str(rule), "values": floats}}


def _problem(values: Any, labels: int) -> str:
    """What is wrong with ``values`` as ``labels`` thresholds, or ""."""
    if values is None:
        return "it has none"
    if not isinstance(values, (list, tuple)):
        return f"its values are a {type(values).__name__}, not a list"
    if len(values) != labels:
        return f"it has {len(values)} values for {labels} classes"
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
            return f"value {i} is {v!r}"
    return ""
