"""Resuming a run and training a finished run further (``--resume RUN --extend finetune=+2``).

Which weights the run ends with afterwards is ``train.final``'s choice (``final.choice``), made
once training has stopped, however it stopped.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

from pydantic import ValidationError

from ..errors import RecipeError
from ..recipe import EXTRACT, Recipe
from .training.phases import PHASE_ORDER

EXTEND_SPEC = re.compile(r"^\+?\d+$")


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
