"""``transferkit sweep``: grid or random search over recipe keys. Every trial is an ordinary run
directory (trained by the same engine as ``transferkit finetune``) inside the sweep folder; the
results table (best validation figure first: top-1 accuracy, or macro mAP for a multi-label recipe)
and ``best_recipe.toml`` are rewritten after each trial, so a sweep stopped part-way loses nothing
and ``--resume SWEEP_DIR`` runs the rest.

The work of the ``sweep`` command. Python: ``plan = plan_sweep("r.toml", grid={"phases.extract.lr": [1e-3, 3e-3]})`` checks every
trial's recipe without writing anything; ``run_sweep(plan)`` runs it; ``sweep(...)`` does both.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import tomli_w

from ...data.multilabel_csv import read_multilabel_csv
from ...engine.prepare import build_splits
from ...engine.run import run_recipe
from ...engine.rundir.artifacts import atomic_write, encode_text
from ...engine.rundir.run_dir import RunDir
from ...errors import RecipeError, TransferkitError
from ...recipe import Recipe
from ...recipe_loading import load_recipe
from ...recipe_tasks import MULTILABEL
from .results import Metric, TrialResult, best, format_table, metric_for, ranked, read_results, tie_note, trial_from_run, write_results
from .space import describe_space, format_value, grid_space, grid_trials, random_space, random_trials

PLAN_FILE = "sweep.json"
BEST_RECIPE = "best_recipe.toml"


@dataclass
class SweepPlan:
    """A checked sweep: the resolved base recipe and each trial's swept values."""

    folder: Path
    origin: str
    base: dict[str, Any]
    mode: str
    space: dict[str, str]
    seed: int
    trials: list[dict[str, Any]]

    @property
    def keys(self) -> list[str]:
        return list(self.space)

    @property
    def metric(self) -> Metric:
        """What the trials are ranked by: the base recipe's task's figure."""
        return metric_for(self.base.get("task"))

    def to_json(self) -> dict[str, Any]:
        return {"format": "transferkit.sweep", "version": 1, "recipe": self.origin, "mode": self.mode, "space": self.space,
                "seed": self.seed, "base": self.base,
                "trials": [{"trial": trial_name(i), "params": p} for i, p in enumerate(self.trials)]}


@dataclass
class SweepOutcome:
    folder: Path
    results: list[TrialResult]  # best first
    best: TrialResult | None

    @property
    def best_recipe(self) -> Path | None:
        return self.folder / BEST_RECIPE if self.best is not None else None


def trial_name(index: int) -> str:
    return f"trial-{index:03d}"


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in params.items())


def trial_recipe(base: Mapping[str, Any], params: Mapping[str, Any], origin: str, index: int | None = None) -> Recipe:
    """The base recipe with one trial's values, validated as ``--set`` overrides are; an error
    names the recipe, the key and the trial."""
    try:
        return load_recipe(base, dict(params))
    except RecipeError as exc:
        message = str(exc).removeprefix("recipe: ")
        where = f"sweep trial {index}: " if index is not None else "swept values "
        raise RecipeError(f"{origin}: {message} ({where}{_params_text(params)})") from None


def check_validation_split(recipe: Recipe, origin: str, seen: dict[str, bool]) -> None:
    """Trials are ranked on a validation figure: refuse a recipe whose data has no validation split
    (read here, before any trial trains, only when ``data.val_fraction = 0`` leaves it to the data)."""
    data = recipe.data
    if data.val_fraction > 0:
        return
    key = json.dumps([recipe.task, data.source, data.root, data.params, data.split_seed, data.test_fraction,
                      data.label_separator], sort_keys=True, default=str)
    if key not in seen:
        seen[key] = _has_validation_split(recipe)
    if not seen[key]:
        multilabel = recipe.task == MULTILABEL
        raise RecipeError(
            f"{origin}: data.val_fraction: 0 and {data.root or data.source} has no"
            f" {'rows with split val' if multilabel else 'val/ folder'}, so the trials would have no validation split;"
            f" a sweep ranks trials by validation {metric_for(recipe.task).noun}, and ranking them on the test split"
            " would pick the trial that fits the test set and make its test figure optimistic; set"
            " data.val_fraction above 0 (e.g. --set data.val_fraction=0.1) or"
            f" {'give validation images split = val in the CSV' if multilabel else 'add a val/ folder'}"
        )


def _has_validation_split(recipe: Recipe) -> bool:
    """Whether the recipe's data (its CSV manifest's rows, for a multi-label recipe) brings a
    validation split of its own."""
    data = recipe.data
    if recipe.task == MULTILABEL:
        return read_multilabel_csv(data.root, separator=data.label_separator, val_fraction=0.0, test_fraction=data.test_fraction,
                                   seed=data.split_seed).splits.val is not None
    return build_splits(recipe).val is not None


def plan_sweep(
    recipe: Any,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    grid: Any = (),
    random: Any = (),
    trials: int | None = None,
    seed: int = 0,
    output: str | Path | None = None,
) -> SweepPlan:
    """Parse the search space and validate every trial's recipe; writes nothing. ``grid``:
    ``["key=v1,v2", ...]`` or ``{key: [values]}``; ``random``: ``["key=loguniform:a:b", ...]``
    or ``{key: spec text | scipy distribution | [values]}`` with ``trials`` draws."""
    if bool(grid) == bool(random):
        raise RecipeError("transferkit sweep: give either --grid KEY=V1,V2 ... or --random KEY=SPEC ... --trials N")
    if grid and trials is not None:
        raise RecipeError("--trials: only for --random; a --grid sweep runs every combination")
    if random and trials is None:
        raise RecipeError("--random: add --trials N, the number of trials to draw")
    resolved = load_recipe(recipe, overrides)
    origin = str(recipe) if isinstance(recipe, (str, Path)) else "recipe"
    spec = grid or random
    params_list = grid_trials(grid_space(spec)) if grid else random_trials(random_space(spec), int(trials or 0), seed)
    base = resolved.to_dict()
    seen: dict[str, bool] = {}
    for index, params in enumerate(params_list):
        check_validation_split(trial_recipe(base, params, origin, index), origin, seen)
    folder = _new_folder(resolved.name, output)
    return SweepPlan(folder, origin, base, "grid" if grid else "random", describe_space(spec), seed, params_list)


def _new_folder(name: str, output: str | Path | None) -> Path:
    if output is not None:
        path = Path(output)
        if (path / PLAN_FILE).exists():
            raise TransferkitError(f"--output {path}: already holds a sweep; continue it with --resume {path} or choose another directory")
        return path
    return RunDir.timestamped(name, "sweep-")


def read_plan(folder: str | Path) -> SweepPlan:
    """The plan a sweep folder was started with (its sweep.json)."""
    path = Path(folder) / PLAN_FILE
    if not path.is_file():
        raise TransferkitError(f"--resume {folder}: no {PLAN_FILE} in it; give the folder a sweep was started in")
    data = json.loads(path.read_text())
    return SweepPlan(Path(folder), data["recipe"], data["base"], data["mode"], data["space"], int(data["seed"]),
                     [t["params"] for t in data["trials"]])


def run_sweep(plan: SweepPlan, *, log: Callable[[str], None] = print) -> SweepOutcome:
    """Run the plan's trials that have no result yet, one after the other, in-process."""
    folder = plan.folder
    folder.mkdir(parents=True, exist_ok=True)
    with RunDir(folder).lock():
        if not (folder / PLAN_FILE).exists():
            text = json.dumps(plan.to_json(), indent=2) + "\n"
            atomic_write(folder / PLAN_FILE, lambda fh: fh.write(text.encode()))
        results = {r.trial: r for r in read_results(folder)}
        title, metric = f"Sweep {folder.name} ({plan.mode} over {', '.join(plan.keys)})", plan.metric
        done = sum(trial_name(i) in results for i in range(len(plan.trials)))
        log(f"sweep: {len(plan.trials)} trials, {plan.mode} over {', '.join(f'{k} [{v}]' for k, v in plan.space.items())};"
            f" folder {folder}" + (f"; {done} already done" if done else ""))
        for index, params in enumerate(plan.trials):
            name = trial_name(index)
            if name in results:
                continue
            log(f"{name} ({index + 1}/{len(plan.trials)}): {_params_text(params)} ...")
            result = run_trial(plan, index, params)
            results[name] = result
            write_results(folder, list(results.values()), plan.keys, title, metric)
            top = best(list(results.values()))
            if top is not None:
                write_best_recipe(plan, top)
            shown = f"val {metric.label} {result.val:.4f}" if result.val is not None else "no val figure"
            shown += f", test {metric.label} {result.test:.4f}" if result.test is not None else ""
            log(f"{name}: {result.status}" + (f": {result.reason}" if result.reason else f", {shown}") + f" ({result.seconds:.1f} s)")
        outcome = SweepOutcome(folder, ranked(list(results.values())), best(list(results.values())))
    log("")
    log(format_table(outcome.results, plan.keys, metric))
    if outcome.best is None:
        raise TransferkitError(f"{folder}: every trial failed (reasons in {folder / 'results.md'}); fix the recipe and sweep again")
    log(f"best: {outcome.best.trial} ({_params_text(outcome.best.params)}), val {metric.label} {outcome.best.val:.4f};"
        f" recipe in {outcome.best_recipe}; table in {folder / 'results.md'}")
    tie = tie_note(outcome.results, metric)
    if tie:
        log(tie)
    return outcome


def run_trial(plan: SweepPlan, index: int, params: dict[str, Any]) -> TrialResult:
    """Train one trial into ``<sweep>/trial-NNN`` (continuing it from its last checkpoint when a
    stopped sweep left one); any error makes it a failed trial with a one-line reason."""
    name, run, started = trial_name(index), RunDir(plan.folder / trial_name(index)), time.perf_counter()
    run_dir = run.path
    try:
        if run.is_finished:  # it finished, but the sweep was stopped before recording it
            seconds = float(run.read_summary().get("wall_seconds", 0.0))
            return trial_from_run(name, params, run_dir, seconds, plan.metric)
        resume = run_dir if run.last_checkpoint.is_file() else None
        if resume is None and run_dir.exists():
            shutil.rmtree(run_dir)  # a start cut short before its first checkpoint: start it again
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "train.log", "a") as fh:

            def log(message: str) -> None:
                fh.write(message + "\n")
                fh.flush()

            try:
                recipe = trial_recipe(plan.base, params, str(plan.folder / PLAN_FILE), index)
                run_recipe(recipe, output=None if resume else run_dir, resume=resume, log=log)
                return trial_from_run(name, params, run_dir, time.perf_counter() - started, plan.metric)
            except Exception:
                log(traceback.format_exc())
                raise
    except Exception as exc:  # noqa: BLE001 - one trial's failure must not stop the others
        reason = str(exc) if isinstance(exc, TransferkitError) else f"{type(exc).__name__}: {exc}"
        return TrialResult(name, params, "failed", seconds=time.perf_counter() - started, reason=" ".join(reason.split()))


def write_best_recipe(plan: SweepPlan, top: TrialResult) -> None:
    """``best_recipe.toml``: the best trial's full recipe, ready for ``transferkit finetune``."""
    recipe = trial_recipe(plan.base, top.params, str(plan.folder / PLAN_FILE))
    text = (f"# The best trial of sweep {plan.folder.name}: {top.trial}, {plan.metric.words} {top.val:.4f}\n"
            f"# swept: {_params_text(top.params)}\n" + tomli_w.dumps(recipe.to_dict()))
    atomic_write(plan.folder / BEST_RECIPE, lambda fh: fh.write(encode_text(text)))


def checked_plan(folder: str | Path) -> SweepPlan:
    """A stopped sweep's plan (for ``--resume``), every trial's recipe checked again."""
    plan = read_plan(folder)
    seen: dict[str, bool] = {}
    for index, params in enumerate(plan.trials):
        check_validation_split(trial_recipe(plan.base, params, str(plan.folder / PLAN_FILE), index), plan.origin, seen)
    return plan


def sweep(recipe: Any, overrides: Iterable[str] | Mapping[str, Any] = (), *, log: Callable[[str], None] = print,
          **options: Any) -> SweepOutcome:
    """``plan_sweep`` then ``run_sweep``: ``sweep("r.toml", grid={"phases.extract.lr": [1e-3, 3e-3]})``."""
    return run_sweep(plan_sweep(recipe, overrides, **options), log=log)
