"""The ``transferkit`` command: a thin shell over the Python API (no training logic here).

It reaches the work through ``transferkit``'s lazy public names, so building the parser (and
``transferkit --help``) imports no torch; tests/test_startup.py holds that. Plugin commands do
load the plugins, whose own imports are theirs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Sequence

import transferkit

from .errors import PluginWarning, RunInterrupted, TransferkitError, UsageError, printable
from .plugin_guard import plugin_code
from .plugins import CONTAINED, DISABLE_ENV, describe_exception, get_plugins, registry
from .workbench import command_modules

LOCAL_SOURCES = ("imagefolder", "csv")  # validate reads these (a download source would download)
KINDS = {"backbones": "backbone", "augmentations": "augmentation", "averagers": "averager", "datasets": "dataset",
         "tta": "tta", "commands": "command"}


def _parser(plugin_commands: bool = True) -> argparse.ArgumentParser:
    """The command line; ``plugin_commands=False`` leaves out the commands plugins add (listing
    them loads every plugin, whose imports can take seconds: not before a core command's first line)."""
    parser = argparse.ArgumentParser(prog="transferkit", description="Transfer learning for image classification.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ft = sub.add_parser("finetune", help="train a recipe: extract phase, then finetune phase")
    ft.add_argument("recipe", nargs="?", help="recipe TOML (optional with --resume: the run's own recipe)")
    ft.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe key, e.g. phases.extract.epochs=3")
    ft.add_argument("--output", metavar="DIR", help="run directory (default runs/<name>/<timestamp>)")
    ft.add_argument("--resume", metavar="RUN_DIR",
                    help="continue a run from its last checkpoint (a finished run is left as it is, unless --extend)")
    ft.add_argument("--extend", action="append", default=[], metavar="PHASE=+N",
                    help="with --resume: train N more epochs of a phase (finetune=+2), or to N in all (finetune=8)")

    va = sub.add_parser("validate", help="check a recipe and its data (folders and CSVs are read, no image decoded) without training")
    va.add_argument("recipe")
    va.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    pl = sub.add_parser("plan", help="images per class and split; per phase: trainable parameters, learning rates, BN mode, averager")
    pl.add_argument("recipe")
    pl.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    sub.add_parser("plugins", help="installed plugins: name, version, hooks, status")

    ls = sub.add_parser("list", help="registered components of one kind")
    ls.add_argument("kind", choices=sorted(KINDS))
    ls.add_argument("--filter", metavar="GLOB", help="e.g. 'timm/resnet*'")
    ls.add_argument("--available", action="store_true",
                    help="backbones: only those whose ImageNet weights are on this machine (no download needed)")

    ev = sub.add_parser("evaluate", help="metrics of a finished run (or an ensemble of runs) on its test split or --data DIR")
    ev.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    ev.add_argument("--data", metavar="DIR_OR_CSV",
                    help="an ImageFolder root (its test/ or val/ when present) or a CSV manifest (its test rows, else val rows, else all)")
    _ensemble_and_tta(ev)
    _raw(ev)

    pr = sub.add_parser("predict", help="classify images with a finished run (or an ensemble: RUN_A,RUN_B)")
    pr.add_argument("run_dir", metavar="RUN_DIR[,RUN_DIR...]")
    pr.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    pr.add_argument("--top-k", type=int, metavar="K",
                    help="most likely classes shown per image (default 1; a multi-label run shows the labels above their"
                         " thresholds unless K is given)")
    pr.add_argument("--output", metavar="FILE", help="also write every class's probability: preds.csv or preds.json")
    _ensemble_and_tta(pr)
    _raw(pr)
    pr.add_argument("--reject", nargs="?", const="auto", metavar="RATE",
                    help="answer 'unknown' (with the closest class) where the calibrated top probability is below the"
                         " threshold that rejects RATE of the run's validation images, e.g. 0.05; without RATE the run's"
                         " own threshold (chosen with data.unknown when the recipe had it, else 0.05)")
    _workbench_commands(sub)
    if plugin_commands:
        _plugin_commands(sub)
    return parser


def _workbench_commands(sub: argparse._SubParsersAction) -> None:
    """check, lr-find, sweep, report, export: each module of ``transferkit.workbench`` adds one."""
    for module in command_modules():
        parser = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(parser)
        parser.set_defaults(workbench_run=module.run)


def _plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Subcommands that plugins add through ``register_commands``."""
    for entry in registry("command").entries():
        if entry.name in COMMANDS or entry.name in sub.choices:
            continue
        try:  # on a scratch parser first: one plugin's broken command must not take the command line down
            with plugin_code(entry.provider, f"command {entry.name!r}"):
                entry.factory(argparse.ArgumentParser(prog=entry.name, add_help=False))
        except CONTAINED as exc:
            get_plugins().disable(entry.provider, f"its command {entry.name!r} failed to configure: {describe_exception(exc)}", exc)
            continue
        parser = sub.add_parser(entry.name, help=f"{entry.description} [plugin {entry.provider}]")
        entry.factory(parser)
        parser.set_defaults(plugin_run=entry.extras["run"])


def _ensemble_and_tta(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ensemble", choices=["mean"], help="combine several runs: mean of their probabilities")
    parser.add_argument("--tta", metavar="NAME", help="test-time augmentation: flip, 5crop, 10crop... (transferkit list tta)")


def _raw(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", action="store_true",
                        help="uncalibrated probabilities: softmax of the logits without the run's temperature")


def _predictor(run_dirs: Sequence[str], args: argparse.Namespace) -> Any:
    if len(run_dirs) > 1 and args.ensemble is None:
        raise TransferkitError(f"{len(run_dirs)} runs given: add --ensemble mean to average them, or give one run")
    if args.tta is not None and args.tta not in registry("tta"):
        raise TransferkitError(f"--tta: {registry('tta').unknown_message(args.tta)}")
    return transferkit.load(run_dirs[0]) if len(run_dirs) == 1 else transferkit.load_ensemble(run_dirs)


def cmd_finetune(args: argparse.Namespace) -> int:
    recipe = args.recipe
    if recipe is None:
        if not args.resume:
            raise SystemExit("transferkit finetune: give a RECIPE, or --resume RUN_DIR")
        recipe = str(Path(args.resume) / "recipe.toml")
    # the first line at once: what follows (torch, the data, the backbone's weights) takes seconds
    print(f"finetune {'--resume ' + args.resume if args.resume else recipe}: reading the recipe, the data and the backbone",
          flush=True)
    transferkit.finetune(recipe, output=args.output, resume=args.resume, extend=args.extend or None, **_overrides(args.overrides))
    return 0


def _overrides(pairs: Sequence[str]) -> dict:
    from .recipe_loading import parse_override  # pydantic: not for --help

    return {key.replace(".", "__"): value for key, value in map(parse_override, pairs)}


def cmd_validate(args: argparse.Namespace) -> int:
    from .engine.preflight.memory_estimate import check_recipe_memory  # torch: not for --help

    recipe = transferkit.load_recipe(args.recipe, args.overrides)
    lines: list[str] = []
    if recipe.data.source in LOCAL_SOURCES:  # read the folders or the CSV (no image decoded): their errors now
        from .engine.preflight.data_checks import check_data  # the engine: not for --help

        lines = check_data(recipe)
    memory = check_recipe_memory(recipe, args.recipe)  # an image size the device cannot hold fails here
    p = recipe.phases
    print(
        f"{args.recipe}: ok ({recipe.name}: {_backbone_words(recipe)} [{recipe.backbone.weights}], data {recipe.data.source}"
        f"{' ' + recipe.data.root if recipe.data.root else ''}, extract {p.extract.epochs} + finetune {p.finetune.epochs} epochs)"
    )
    print(f"memory: {memory.describe()}")
    for line in lines + _weights_lines(recipe):
        print(line)
    return 0


def _backbone_words(recipe: Any) -> str:
    spec = recipe.backbone
    return f"auto, the best of {', '.join(spec.candidates)}" if spec.name == "auto" else spec.name


def _weights_lines(recipe: Any) -> list[str]:
    """A warning when the backbone's ImageNet weights are not on this machine (finetune downloads them)."""
    from .models.weight_sources import local_weights  # no torch

    if recipe.backbone.weights != "imagenet":
        return []
    auto = recipe.backbone.name == "auto"
    lines = []
    for name in recipe.backbone.candidates if auto else [recipe.backbone.name]:
        found = local_weights(name)
        if found is None or found[0] is not None:
            continue
        if auto:  # the ranking needs every candidate's weights here
            lines.append(f"warning: backbone.candidates: no ImageNet weights for {name!r} on this machine; finetune will refuse"
                         " it: leave it out (transferkit list backbones --available: those here)")
        elif not found[1]:
            lines.append(f"warning: backbone.weights: no ImageNet weights are known for {name!r}; set backbone.weights to a file,"
                         ' or "none" (transferkit list backbones --available: those with weights here)')
        else:
            lines.append(f"warning: backbone.weights: no ImageNet weights for {name!r} on this machine (looked in:"
                         f" {', '.join(found[1])}); finetune downloads them, which needs the network"
                         " (transferkit list backbones --available: those here)")
    return lines


def cmd_plan(args: argparse.Namespace) -> int:
    from .engine.preflight.plan_table import format_plan, plan_recipe  # the engine and torch: not for --help

    print(format_plan(plan_recipe(transferkit.load_recipe(args.recipe, args.overrides))))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    transferkit.get_plugins().check_hooks()  # a plugin whose hook fails shows as disabled, with the reason
    rows = [(i.name, i.distribution or "-", i.version or "-", ", ".join(i.hooks) or "-", i.status + (f": {i.error}" if i.error else ""))
            for i in transferkit.get_plugins().info.values()]
    _table(("plugin", "package", "version", "hooks", "status"), rows)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    entries = registry(KINDS[args.kind]).entries(args.filter)
    if args.kind == "backbones":
        return _list_backbones(entries, args)
    if args.available:
        raise UsageError(f"--available: only for backbones (whose weights may be on this machine), not {args.kind}")
    rows = [(e.name, e.provider, (f"[{e.extras['kind']}] " if "kind" in e.extras else "") + e.describe()) for e in entries]
    _table(("name", "plugin", "description"), rows)
    if not rows:
        print(f"no {args.kind} match {args.filter!r}" if args.filter else f"no {args.kind} registered")
    return 0


def _list_backbones(entries: Sequence[Any], args: argparse.Namespace) -> int:
    """Backbones with a column saying whether their ImageNet weights are here: "here", "download"
    (a known source, not on this machine), "none" (no pretrained weights known) or "plugin" (the
    plugin loads its own)."""
    from .models.weight_sources import local_weights  # no torch

    rows = []
    for e in entries:
        found = local_weights(e.name)
        mark = "plugin" if found is None else "here" if found[0] is not None else "download" if found[1] else "none"
        if not args.available or mark == "here":
            rows.append((e.name, e.provider, mark, e.describe()))
    _table(("name", "plugin", "weights", "description"), rows)
    if not rows:
        what = "backbones with ImageNet weights on this machine" if args.available else "backbones"
        print(f"no {what} match {args.filter!r}" if args.filter else f"no {what}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    print(f"evaluating {' + '.join(args.run_dirs)} ...", file=sys.stderr, flush=True)
    from .evaluate_multilabel import is_multilabel_run  # the engine: not for --help

    if any(is_multilabel_run(run) for run in args.run_dirs):
        return _evaluate_multilabel(args)
    model = _predictor(args.run_dirs, args)
    started = time.perf_counter()
    metrics = transferkit.evaluate(args.run_dirs, args.data, tta=args.tta, model=model, raw=args.raw)
    top = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("top"))
    what = " + ".join(args.run_dirs) + (f" (ensemble of {len(args.run_dirs)})" if len(args.run_dirs) > 1 else "")
    what += f" with tta {args.tta}" if args.tta else ""
    classes = len(metrics["per_class_accuracy"])
    present = "" if metrics["classes_present"] == classes else f" of {metrics['classes_present']} of the {classes} classes"
    probabilities = "uncalibrated" if args.raw else "calibrated"
    print(f"{what}: {top}, macro-F1 {metrics['macro_f1']:.4f}, ECE {metrics['ece']:.4f} and NLL {metrics['loss']:.4f}"
          f" ({probabilities}) on {metrics['n']} images{present} ({time.perf_counter() - started:.1f} s)")
    if metrics.get("skipped"):
        bad = metrics["skipped"]
        shown = "; ".join(f"{printable(b['file'])}: {printable(b['reason'])}" for b in bad[:5]) + ("; ..." if len(bad) > 5 else "")
        print(f"skipped {len(bad)} image(s) that could not be read (not in the figures): {shown}")
    worst = sorted((v, k) for k, v in metrics["per_class_accuracy"].items() if v is not None)[:3]
    print("lowest per-class accuracy: " + ", ".join(f"{k} {v:.3f}" for v, k in worst))
    return 0


def _evaluate_multilabel(args: argparse.Namespace) -> int:
    from .evaluate_multilabel import evaluate_multilabel

    if len(args.run_dirs) > 1 or args.tta or args.raw:
        given = "several runs" if len(args.run_dirs) > 1 else "--tta" if args.tta else "--raw"
        raise UsageError(f"{given}: a multi-label run is evaluated alone, without test-time views or calibration; give one run")
    started = time.perf_counter()
    m = evaluate_multilabel(args.run_dirs[0], args.data)
    print(f"{args.run_dirs[0]}: macro mAP {m['macro_map']:.4f}, micro mAP {m['micro_map']:.4f}; at its thresholds macro-F1"
          f" {m['macro_f1']:.4f}, subset accuracy {m['subset_accuracy']:.4f} on {m['where']} ({time.perf_counter() - started:.1f} s)")
    worst = sorted((v, k) for k, v in m["per_label_ap"].items() if v is not None)[:3]
    print("lowest average precision: " + ", ".join(f"{k} {v:.3f}" for v, k in worst))
    if m["labels_without_positives"]:
        print(f"no positive image (left out of the macro mean): {', '.join(m['labels_without_positives'])}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict_files import check_output, predict_files  # the engine and torch: not for --help

    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k {args.top_k}: give 1 or more (the number of most likely classes shown)")
    check_output(args.output)
    print(f"predicting with {args.run_dir} ...", file=sys.stderr, flush=True)
    model = _predictor(args.run_dir.split(","), args)
    result = predict_files(model, args.images, top_k=args.top_k, tta=args.tta, output=args.output, raw=args.raw,
                           reject=args.reject)
    if args.output:
        print(f"wrote {len(result.rows)} predictions with every class's probability to {args.output}", file=sys.stderr)
    if result.skipped:
        print(f"transferkit: error: {len(result.skipped)} of {len(result.skipped) + len(result.rows)} files could not be read"
              f" (listed above) and were skipped; the other {len(result.rows)} were predicted", file=sys.stderr)
        return 1
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(header)]
    widths[-1] = 0
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


COMMANDS = {
    "finetune": cmd_finetune,
    "validate": cmd_validate,
    "plan": cmd_plan,
    "plugins": cmd_plugins,
    "list": cmd_list,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
}


def main(argv: Sequence[str] | None = None) -> int:
    _one_line_output()
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        command = next((a for a in argv if not a.startswith("-")), None)
        core = command in COMMANDS or command in {m.NAME for m in command_modules()}
        args = _parser(plugin_commands=not core).parse_args(argv)
    except TransferkitError as exc:  # a plugin that fails to load under TRANSFERKIT_STRICT_PLUGINS
        print(f"transferkit: error: {exc}", file=sys.stderr)
        return exc.exit_code

    try:
        run = getattr(args, "workbench_run", None) or getattr(args, "plugin_run", None) or COMMANDS[args.command]
        return int(run(args) or 0)
    except TransferkitError as exc:
        if getattr(exc, "traceback_above", False) and exc.__cause__ is not None:  # a plugin's bug: where it happened
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"transferkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RunInterrupted as exc:  # a run: says where its checkpoint is, or that there is none
        print(f"transferkit: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("transferkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `transferkit list backbones | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except MemoryError:
        print("transferkit: error: out of memory; lower data.batch_size or data.image_size (transferkit plan shows"
              " the estimate), or free memory", file=sys.stderr)
        return 1
    except Exception as exc:
        if getattr(args, "plugin_run", None) is not None:  # a plugin's command: name the plugin, not a traceback
            print(f"transferkit: error: command {args.command!r} (a plugin's) failed: {type(exc).__name__}: {exc};"
                  f" report it to the plugin's authors, or skip the plugin with {DISABLE_ENV}", file=sys.stderr)
            return 1
        if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch here
            print(f"transferkit: error: out of GPU memory ({str(exc).splitlines()[0][:160]}); lower data.batch_size or"
                  " data.image_size (transferkit plan shows the estimate)", file=sys.stderr)
            return 1
        raise


def _one_line_output() -> None:
    """File names that are not UTF-8 (surrogate escapes) print escaped instead of crashing print,
    and a plugin's warning prints as one line."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    previous = warnings.formatwarning

    def one_line(message: Any, category: type[Warning], *rest: Any, **kwargs: Any) -> str:
        if issubclass(category, PluginWarning):
            return f"transferkit: warning: {message}\n"
        return previous(message, category, *rest, **kwargs)

    if getattr(previous, "__name__", "") != "one_line":
        warnings.formatwarning = one_line


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
