"""Reopening a run: ``--resume RUN`` (from its last checkpoint, with the recipe it ran) and training
a finished run further (``--resume RUN --extend finetune=+2``).

Which weights the run ends with afterwards is ``train.final``'s choice (``final.choice``), made
once training has stopped, however it stopped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pydantic import ValidationError

from ..errors import RecipeError, TransferkitError
from ..recipe import EXTRACT, Recipe
from .rundir.checkpoint_io import load_checkpoint
from .rundir.run_dir import RunDir
from .training.phases import PHASE_ORDER

EXTEND_SPEC = re.compile(r"^\+?\d+$")


@dataclass
class Reopened:
    """A run to go on with: its folder, its last checkpoint, the recipe it goes on with (the
    run's own, with more epochs where ``--extend`` asked), and the keys ``--extend`` changed."""

    run: RunDir
    checkpoint: dict[str, Any]
    recipe: Recipe
    extended: list[str] = field(default_factory=list)

    @property
    def phases(self) -> list[str]:
        """The phases ``--extend`` gave more epochs."""
        return [key.split(".")[1] for key in self.extended]

    @property
    def finished(self) -> bool:
        """Finished and not extended: nothing to train."""
        return self.run.is_finished and not self.extended


def reopen(recipe: Recipe, resume: str | Path, extend: Mapping[str, str] | None, dataset: Any, world_size: int = 1) -> Reopened:
    """The run at ``resume``, checked: it has a checkpoint, ``recipe`` is its own (but for what
    ``extend`` adds), it goes on with as many processes as it trained with (``world_size``), and a
    run trained on a Python dataset is given it again."""
    run = RunDir(resume)
    _check_resumable(run, resume)
    checkpoint = load_checkpoint(run.last_checkpoint)
    extended: list[str] = []
    if extend:
        recipe, extended = extended_recipe(recipe, extend, checkpoint)
    recipe = _check_same_recipe(recipe, checkpoint, run, ignore=extended)
    reopened = Reopened(run, checkpoint, recipe, extended)
    if not reopened.finished:
        _check_same_world_size(checkpoint, world_size, run)
    if not reopened.finished and dataset is None and any(r["image"].startswith("dataset[") for r in run.read_splits()):
        raise TransferkitError(f"--resume {run.path}: the run was trained on a Python dataset; give it again:"
                               " transferkit.finetune(resume=RUN_DIR, dataset=...)")
    return reopened


def parse_extend(specs: Iterable[str] | Mapping[str, Any]) -> dict[str, str]:
    """``["finetune=+2"]`` (or ``{"finetune": "+2"}`` / ``{"finetune": 2}``...) -> ``{"finetune": "+2"}``."""
    pairs = specs.items() if isinstance(specs, Mapping) else (s.partition("=")[::2] for s in specs)
    out = {}
    for phase, value in pairs:
        phase, value = str(phase).strip(), str(value).strip()
        if phase not in PHASE_ORDER or not EXTEND_SPEC.match(value):
            raise RecipeError(
                f"--extend {phase}={value}: expected PHASE=+N (N more epochs) or PHASE=N (N in all), PHASE one of"
                f" {', '.join(PHASE_ORDER)}; e.g. --extend finetune=+2"
            )
        out[phase] = value
    return out


def extended_recipe(recipe: Recipe, extend: Mapping[str, str], checkpoint: Mapping[str, Any]) -> tuple[Recipe, list[str]]:
    """The run's recipe with more epochs for the phases in ``extend``, and the keys changed.
    ``+N``: N epochs more than the phase trained (or plans, when it has not finished); ``N``:
    N epochs in all. The cosine schedule stretches to the new length: the LR rises to where a
    run of that length would be at this epoch, then decays to 0."""
    at_phase, at_epoch = str(checkpoint["phase"]), int(checkpoint["epoch"])
    stopped = bool(checkpoint.get("early_stopping", {}).get("stopped"))
    data = recipe.to_dict()
    changed = []
    for phase, spec in parse_extend(extend).items():
        planned = getattr(recipe.phases, phase).epochs
        if phase == EXTRACT and recipe.phases.extract.probe:
            raise RecipeError("--extend extract: phase extract is a converged logistic probe (phases.extract.solver); it has no"
                              " epochs to add; extend finetune")
        if PHASE_ORDER[phase] < PHASE_ORDER[at_phase]:
            raise RecipeError(f"--extend {phase}: the run is already past phase {phase}; extend a later phase")
        done = at_epoch if phase == at_phase else 0
        base = done if phase == at_phase and (stopped or done >= planned) else planned
        epochs = base + int(spec[1:]) if spec.startswith("+") else int(spec)
        if epochs < done:
            raise RecipeError(f"--extend {phase}={spec}: phase {phase} has already trained {done} epochs; give more")
        data["phases"][phase]["epochs"] = epochs
        changed.append(f"phases.{phase}.epochs")
    try:
        return Recipe.model_validate(data), changed
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "recipe"
        raise RecipeError(f"--extend: {where}: {err['msg'].removeprefix('Value error, ')}") from None


def reopen_for_more_epochs(checkpoint: dict[str, Any]) -> None:
    """A checkpoint of a phase that stopped early trains on when extended: forget the stop."""
    state = checkpoint.get("early_stopping")
    if state:
        state.update(stopped=False, bad_epochs=0)
    summary = json.loads(checkpoint.get("summary_json", "{}"))
    for info in summary.get("phases", {}).values():
        info.pop("early_stopped", None)
    checkpoint["summary_json"] = json.dumps(summary)


def _check_resumable(run: RunDir, resume: str | Path) -> None:
    if run.last_checkpoint.is_file():
        return
    if not run.path.is_dir():
        raise TransferkitError(f"--resume {resume}: no such run directory")
    if run.leftovers():
        raise TransferkitError(
            f"--resume {resume}: the run stopped before its first checkpoint, so there is nothing to resume; start it again"
            f" with transferkit finetune RECIPE --output {resume} (what it left is removed)"
        )
    raise TransferkitError(f"--resume {resume}: no checkpoints/last.pt in it; nothing to resume")


def _check_same_world_size(checkpoint: Mapping[str, Any], world_size: int, run: RunDir) -> None:
    """Each process's share of an epoch and the steps in it depend on the number of processes: with
    another number the run would skip or repeat images and its schedule would not fit. (A checkpoint
    from before this record: not checked.)"""
    trained = checkpoint.get("world_size")
    if trained is not None and int(trained) != world_size:
        raise TransferkitError(
            f"--resume {run.path}: the run trained as {int(trained)} process(es), this is {world_size}; resume it with"
            f" {int(trained)} (torchrun --nnodes x --nproc_per_node), or start a new run"
        )


def _check_same_recipe(recipe: Recipe, checkpoint: dict[str, Any], run: RunDir, ignore: Sequence[str] = ()) -> Recipe:
    """Resuming with other settings would silently mix two runs: refuse, naming the first key
    (``ignore``: the keys ``--extend`` changed). Keys added to transferkit after the run started
    keep their defaults (and a run from before ``data.split_seed`` keeps splitting with ``seed``, one from
    before ``backbone.readout`` reads the pooled features)."""
    stored = json.loads(checkpoint.get("recipe_json", "{}"))
    if stored and "split_seed" not in stored.get("data", {}):
        recipe = recipe.model_copy(deep=True)
        recipe.data.split_seed = int(stored.get("seed", 0))
        ignore = [*ignore, "data.split_seed"]
    if stored and "readout" not in stored.get("backbone", {}):  # a run from before backbone.readout read the pooled features
        recipe = recipe.model_copy(deep=True)
        recipe.backbone.readout = "pooled"
        ignore = [*ignore, "backbone.readout"]
    new, defaults = recipe.to_dict(), Recipe().to_dict()
    differences = [d for d in _diff(stored, new) if d not in ignore and not _new_default(d, stored, new, defaults)]
    if stored and differences:
        raise TransferkitError(
            f"--resume {run.path}: the recipe differs from the run's at {differences[0]}; resume with the run's own"
            " recipe (omit RECIPE and --set); to train more epochs, use --extend PHASE=+N"
        )
    return recipe


def _new_default(path: str, stored: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any]) -> bool:
    """Whether ``path`` is a key the stored recipe does not have and the new one has at its default."""
    node: Any = stored
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _lookup(new, path) == _lookup(defaults, path)
        node = node[part]
    return False


def _lookup(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]
