"""``transferkit sweep``: grid or random search over recipe keys. Every trial is an ordinary run
directory (trained by the same engine as ``transferkit finetune``) inside the sweep folder; the
results table (best validation figure first: top-1 accuracy, or macro mAP for a multi-label recipe)
and ``best_recipe.toml`` are rewritten after each trial, so a sweep stopped part-way loses nothing
and ``--resume SWEEP_DIR`` runs the rest.

Python (``transferkit.workbench.sweep.trials``): ``plan = plan_sweep("r.toml", grid={"phases.extract.lr":
[1e-3, 3e-3]})`` checks every trial's recipe without writing anything; ``run_sweep(plan)`` runs
it; ``sweep(...)`` does both.
"""

from __future__ import annotations

import argparse
import sys

from ...errors import RecipeError

NAME = "sweep"
HELP = "grid or random search over recipe keys: one run per trial, a results table and best_recipe.toml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", help="recipe TOML (not with --resume)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key in every trial, e.g. data.root=DIR")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="try every combination of these values, e.g. phases.extract.lr=1e-3,3e-3 (repeatable)")
    parser.add_argument("--random", action="append", default=[], metavar="KEY=SPEC",
                        help="draw values: loguniform:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH or choice:V1,V2 (repeatable)")
    parser.add_argument("--trials", type=int, metavar="N", help="how many random trials to draw (with --random)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the random draws (default 0)")
    parser.add_argument("--output", metavar="DIR", help="sweep folder (default runs/<name>/sweep-<timestamp>)")
    parser.add_argument("--resume", metavar="SWEEP_DIR", help="run the trials a stopped sweep has not finished")


def run(args: argparse.Namespace) -> int:
    from .trials import checked_plan, plan_sweep, run_sweep  # see workbench/__init__.py

    if args.resume:
        if args.recipe or args.overrides or args.grid or args.random or args.trials is not None or args.output:
            raise RecipeError(f"--resume {args.resume}: the sweep's own recipe and search space are used;"
                              " drop RECIPE, --set, --grid, --random, --trials and --output")
        plan = checked_plan(args.resume)
    elif not args.recipe:
        raise RecipeError("transferkit sweep: give a RECIPE, or --resume SWEEP_DIR")
    else:
        plan = plan_sweep(args.recipe, args.overrides, grid=args.grid, random=args.random, trials=args.trials,
                          seed=args.seed, output=args.output)
    if plan.mode == "random" and args.trials and len(plan.trials) < args.trials:
        print(f"--trials {args.trials}: every key is a choice, with {len(plan.trials)} combinations; each runs once")
    try:
        run_sweep(plan)
    except KeyboardInterrupt:
        print(f"transferkit: sweep interrupted; finished trials are in {plan.folder / 'results.md'};"
              f" continue with transferkit sweep --resume {plan.folder}", file=sys.stderr)
        return 130
    return 0
