"""A whole run: prepare, create (or reopen) the run directory, train both phases, then write the
final model, the figures and the summary."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import BadFilesError, TransferkitError
from ..recipe import Recipe
from .evaluation.plots import plot_confusion, plot_curves, plot_reliability
from .final.choice import FINETUNED, PROBE, Candidate, interpolate, model_with, select_final
from .final.confidence import ConfidenceFit, confidence_lines, fit_confidence
from .final.cross_fit import cross_fit_final, fold_count, soup_name
from .prepare import Prepared, prepare
from .resume import extended_recipe, reopen_for_more_epochs
from .rundir.checkpoint_io import load_checkpoint
from .rundir.model_files import load_classifier, write_prepared_model
from .rundir.run_dir import RunDir
from .rundir.tensorboard_sink import require_tensorboard, tensorboard_sink
from .runtime.device import resolve_runtime
from .runtime.distributed import DistContext, init_distributed
from .runtime.stop_signals import StopRequest, interrupted, stop_signals
from .training.trainer import Trainer, resume_state


@dataclass
class RunResult:
    """What ``finetune`` hands back: where the run is, its summary, and the trained model."""

    run_dir: Path
    summary: dict[str, Any]
    model: Any

    @property
    def test_accuracy(self) -> float | None:
        test = self.summary.get("test")
        return test["top1"] if test else None


def run_recipe(
    recipe: Recipe,
    *,
    output: str | Path | None = None,
    resume: str | Path | None = None,
    extend: Mapping[str, str] | None = None,
    dataset: Any = None,
    val_dataset: Any = None,
    test_dataset: Any = None,
    on_step: list[Callable[[dict[str, Any]], None]] | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    started = time.perf_counter()
    require_tensorboard(recipe)
    dist = init_distributed(resolve_runtime(recipe.train).device.type)
    log = _silent if not dist.is_main else _printable(log)
    checkpoint = None
    if extend and resume is None:
        raise TransferkitError("--extend: give the run to train further with --resume RUN_DIR")
    if resume is not None:
        run = RunDir(resume)
        _check_resumable(run, resume)
        checkpoint = resume_state(run)
        extended: list[str] = []
        if extend:
            recipe, extended = extended_recipe(recipe, extend, checkpoint)
        recipe = _check_same_recipe(recipe, checkpoint, run, ignore=extended)
        if run.is_finished and not extend:
            return finished_result(run, log)
        if dataset is None and any(r["image"].startswith("dataset[") for r in run.read_splits()):
            raise TransferkitError(f"--resume {run.path}: the run was trained on a Python dataset; give it again:"
                                   " transferkit.finetune(resume=RUN_DIR, dataset=...)")
    elif output is not None and dist.is_main:
        RunDir.check_new(output)  # before minutes of decoding
    # SIGINT and SIGTERM alike; across processes every rank must stop at the same step, so there
    # the first signal stops at once (the last checkpoint is kept)
    with stop_signals(graceful=not dist.enabled) as stop:
        try:
            prepared = prepare(recipe, dataset, val_dataset, test_dataset, log=log)
        except BadFilesError as exc:
            raise _listed(exc, recipe, output, resume, dist) from None
        except KeyboardInterrupt as exc:
            raise interrupted(RunDir(resume) if resume is not None else None, exc) from None
        if resume is None:  # rank 0 names the directory (its timestamp), the others follow
            path = dist.broadcast(str(RunDir.create(recipe, output).path) if dist.is_main else None)
            run = RunDir(path)
        if not dist.is_main:
            return _train(prepared, run, checkpoint, on_step, log, started, dist, stop)
        with run.lock():
            try:
                if resume is None:
                    removed = run.remove_leftovers()
                    if removed:
                        log(f"removed what a run that died before its first checkpoint left in {run.path}: {', '.join(removed)}")
                if resume is None or extend:
                    run.write_recipe(recipe)
                if extend:
                    log(f"extending {run.path}: " + ", ".join(f"{name} to {getattr(recipe.phases, name).epochs} epochs" for name in extend))
                    run.summary_file.unlink(missing_ok=True)  # unfinished again until the added epochs are done
                    reopen_for_more_epochs(checkpoint)
                run.write_splits(prepared.splits)
                return _train(prepared, run, checkpoint, on_step, log, started, dist, stop)
            except KeyboardInterrupt as exc:
                raise interrupted(run, exc) from None


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


def _silent(_message: str) -> None:
    pass


def _listed(exc: BadFilesError, recipe: Recipe, output: str | Path | None, resume: str | Path | None, dist: DistContext) -> BadFilesError:
    """The bad files, all of them, in the run's folder (``bad_images.txt``); the error names the first few."""
    if len(exc.bad) <= exc.SHOWN or not dist.is_main:
        return exc
    try:
        run = RunDir(resume) if resume is not None else RunDir.create(recipe, output)
    except TransferkitError:
        return exc
    run.write_text(run.bad_images_file, "".join(f"{path}\t{why}\n" for path, why in exc.bad))
    return exc.listed(str(run.bad_images_file))


def finished_result(run: RunDir, log: Callable[[str], None]) -> RunResult:
    """``--resume`` of a finished run: nothing to train, nothing rewritten; its summary and model."""
    summary = run.read_summary()
    figure = summary.get("test") or summary.get("val")
    shown = f"{'test' if summary.get('test') else 'validation'} accuracy {figure['top1']:.4f}" if figure else "no test figure"
    log(f"{run.path}: the run is finished ({shown}); nothing to resume. To train more:"
        f" --resume {run.path} --extend finetune=+2")
    return RunResult(run.path, summary, load_classifier(run.path)[0])


def _printable(log: Callable[[str], None]) -> Callable[[str], None]:
    """File names that are not UTF-8 (surrogate escapes) shown as ``\\udcff`` instead of making a
    strict stdout raise in the middle of a run."""
    return lambda message: log(message.encode("utf-8", "backslashreplace").decode("utf-8"))


def _train(
    prepared: Prepared, run: RunDir, checkpoint: Any, on_step: Any, log: Callable[[str], None], started: float,
    dist: DistContext, stop: StopRequest,
) -> RunResult:
    recipe = prepared.recipe
    log(f"run directory: {run.path}")
    log(
        f"data: {len(prepared.splits.train)} train, {len(prepared.splits.val or [])} val, "
        f"{len(prepared.splits.test or [])} test images, {len(prepared.splits.classes)} classes; "
        f"backbone {recipe.backbone.name} ({prepared.model.backbone.weights_origin}); device {prepared.runtime.describe()}"
    )
    report = prepared.decode_report
    if report.bad and dist.is_main:
        run.write_text(run.skipped_images_file, "".join(f"{f}\t{r}\n" for f, r in report.bad))
        shown = "; ".join(f"{f}: {r}" for f, r in report.bad[:BadFilesError.SHOWN])
        more = f"; ... and {len(report.bad) - BadFilesError.SHOWN} more" if len(report.bad) > BadFilesError.SHOWN else ""
        log(f"skipped {len(report.bad)} bad image(s) (data.on_bad_image = \"skip\"): {shown}{more};"
            f" all listed in {run.skipped_images_file}")
    with tensorboard_sink(recipe, run, enabled=dist.is_main) as tensorboard_steps:
        trainer = Trainer(prepared, run, on_step=list(on_step or []) + tensorboard_steps, log=log, dist=dist, stop=stop)
        summary = trainer.fit(checkpoint)
    final_model = trainer.averager.module if trainer.averager is not None else trainer.model
    final_model, weights = _final_weights(trainer, final_model, summary, log)
    if "test" not in summary and prepared.splits.val is not None:  # collective: every rank evaluates
        summary["val"] = trainer.predictions_of(weights, "val", lambda: final_model, "val").metrics()
    oof = trainer.out_of_fold
    evidence = (oof["logits"][oof["chosen_alpha"]].numpy(), oof["targets"]) if oof else None
    # on the weights just chosen, from the predictions the choice and the test figures already made
    confidence = fit_confidence(prepared, final_model, dist=dist, log=log, evidence=evidence, predictions=trainer.predictions,
                                weights=weights)
    summary.update(confidence.summary)
    if not dist.is_main:
        dist.barrier()  # rank 0 writes the outputs
        return RunResult(run.path, summary, final_model.cpu().eval())
    log("writing the model, figures and summary")
    finish(prepared, run, summary, final_model, trainer.best_top1, confidence)
    if report.bad:
        summary["skipped_images"] = [{"file": f, "reason": r} for f, r in report.bad]
    if report.leaks:
        summary["leakage"] = report.leaks
    summary["decode_seconds"] = report.seconds
    summary["wall_seconds"] = time.perf_counter() - started
    run.write_json(run.summary_file, summary)
    log(format_summary(summary, run))
    dist.barrier()
    return RunResult(run.path, summary, final_model.cpu().eval())


def _final_weights(trainer: Trainer, finetuned: Any, summary: dict[str, Any], log: Callable[[str], None]) -> tuple[Any, str | None]:
    """``train.final``: keep the last weights, the best epoch's, or choose among the probe, the
    fine-tuned model and their interpolations on validation (``final.choice``). The test figures
    become the chosen model's. Also the chosen weights' name in ``trainer.predictions`` (None: no
    name to share predictions under). Collective: every rank evaluates the same candidates."""
    prepared, recipe = trainer.prepared, trainer.prepared.recipe
    splits = prepared.splits
    if recipe.phases.finetune.epochs == 0 or recipe.train.final == "last":
        summary["final"] = {"policy": recipe.train.final, "chosen": "last"}
        if recipe.phases.finetune.epochs > 0:
            return finetuned, FINETUNED
        if recipe.phases.extract.epochs == 0:
            return finetuned, None
        prepared.eval_transform = prepared.probe_preprocessing  # the phase-1 model is the final one
        return finetuned, PROBE if trainer.averager is None else None  # an averaged phase 1 is not the probe's weights
    best_state = None
    if recipe.train.final == "best":
        trainer.dist.barrier()  # rank 0 wrote best.pt
        if trainer.run.best_checkpoint.is_file():
            best_state = load_checkpoint(trainer.run.best_checkpoint)["model"]

    def evaluate(candidate: Candidate, split: str) -> dict[str, Any] | None:
        if getattr(splits, split) is None:
            return None
        predictions = trainer.predictions_of(candidate.name, split, lambda: model_with(finetuned, candidate.state),
                                             f"{split} (final candidates)")
        return predictions.metrics(calibrated_loss=True)

    folds = fold_count(recipe.train.folds, splits, trainer.dist.enabled)
    if recipe.train.final == "auto" and folds > 1 and trainer.phase1_state is not None:
        chosen, info, trainer.out_of_fold = cross_fit_final(trainer, finetuned, folds, log)
        weights = soup_name(info["alpha"])
        if recipe.train.test_candidates and splits.test is not None:
            _test_fold_models(trainer, finetuned, info, trainer.out_of_fold)
    else:
        chosen, info = select_final(
            recipe.train.final, finetuned, trainer.phase1_state, best_state, evaluate,
            n_val=len(splits.val or []), measure_test=recipe.train.test_candidates, log=log,
        )
        weights = FINETUNED if info["chosen"] in ("last", FINETUNED) else info["chosen"]
    summary["final"] = info
    if info.get("alpha") == 0.0:  # the probe: it is evaluated, calibrated and exported at its own preprocessing
        prepared.eval_transform = prepared.probe_preprocessing
    trainer.predictions.keep_only([weights])  # the candidates not chosen are done with
    if chosen is not finetuned and splits.test is not None:
        summary["test_finetuned"] = summary.get("test")
        summary["test"] = trainer.predictions_of(weights, "test", lambda: chosen, "test (final)").metrics()
        if trainer.dist.is_main:
            record = {k: v for k, v in summary["test"].items() if k != "confusion_matrix"}
            trainer.run.append_metrics({"kind": "test", "phase": "final", "weights": info["chosen"], **record})
        log(f"  final test accuracy ({info['chosen']}): {summary['test']['top1']:.4f}")
    return chosen, weights


def _test_fold_models(trainer: Trainer, template: Any, info: dict[str, Any], oof: dict[str, Any]) -> None:
    """``train.test_candidates`` under cross-fitting: each fold model's test accuracy, the soup's
    and the probe's, beside the chosen model's (what the soup buys, measured)."""
    models = [(PROBE, PROBE, oof["probe"]), ("soup", soup_name(1.0), oof["soup"])]
    models += [(f"fold-{i}", FINETUNED if i == 0 else None, s) for i, s in enumerate(oof["fold_states"])]  # fold 0: the run's own
    models += [(f"soup-wise-{a:g}", soup_name(a), interpolate(oof["probe"], oof["soup"], a)) for a in (0.5, 0.75)]
    scores = {}
    for name, weights, state in models:
        predictions = trainer.predictions_of(weights, "test", lambda state=state: model_with(template, state), f"test ({name})")
        scores[name] = predictions.metrics()["top1"]
    info["test_models"] = scores


def _check_same_recipe(recipe: Recipe, checkpoint: dict[str, Any], run: RunDir, ignore: Sequence[str] = ()) -> Recipe:
    """Resuming with other settings would silently mix two runs: refuse, naming the first key
    (``ignore``: the keys ``--extend`` changed). Keys added to transferkit after the run started
    keep their defaults (and a run from before ``data.split_seed`` keeps splitting with ``seed``)."""
    stored = json.loads(checkpoint.get("recipe_json", "{}"))
    if stored and "split_seed" not in stored.get("data", {}):
        recipe = recipe.model_copy(deep=True)
        recipe.data.split_seed = int(stored.get("seed", 0))
        ignore = [*ignore, "data.split_seed"]
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


def finish(
    prepared: Prepared, run: RunDir, summary: dict[str, Any], final_model: Any, best_top1: float,
    confidence: ConfidenceFit | None = None,
) -> None:
    """Write the final model (the averaged one when the recipe averages) with its temperature and
    rejection rule, plots and summary."""
    recipe = prepared.recipe
    classes = prepared.splits.classes
    final = summary.get("test") or summary.get("val")
    confidence = confidence or ConfidenceFit()
    write_prepared_model(prepared, final_model, run.path, confidence.manifest_entries())
    plot_curves(run.read_metrics(), run.path / "curves.png")
    if confidence.reliability is not None:
        before, after = confidence.reliability
        plot_reliability(before, after, run.reliability_plot, confidence.reliability_split, confidence.calibration.temperature)
    if final is not None:
        plot_confusion(final["confusion_matrix"], classes, run.path / "confusion_matrix.png", "test" if "test" in summary else "val")
    summary.update(
        name=recipe.name,
        classes=classes,
        device=prepared.runtime.describe(),
        backbone=recipe.backbone.name,
        best_val_or_train_top1=best_top1,
    )


def format_summary(summary: dict[str, Any], run: RunDir) -> str:
    lines = ["", f"summary ({summary.get('name')}, {summary.get('device')}):"]
    for name, info in summary.get("phases", {}).items():
        test = info.get("test_top1")
        shown = f"test accuracy {test:.4f}" if test is not None else "no test split"
        lines.append(f"  {name:<9} {shown}, {info['seconds']:.1f} s training, {info['trainable_parameters']:,} trainable parameters")
    final = summary.get("test")
    raw = summary.get("test_raw")
    chosen = summary.get("final", {})
    if chosen.get("chosen") not in (None, "last", "finetuned") and summary.get("test_finetuned"):
        lines.append(f"  finetuned test accuracy {summary['test_finetuned']['top1']:.4f} (last weights)")
        lines.append(f"  {chosen['chosen']:<9} test accuracy {final['top1']:.4f} (chosen on validation, exported)")
    elif raw is not None:
        lines.append(f"  raw       test accuracy {raw['top1']:.4f} (last weights)")
        lines.append(f"  {summary.get('averager', 'averaged'):<9} test accuracy {final['top1']:.4f} (averaged weights, exported)")
    if final is not None:
        top5 = next((f", {k} {v:.4f}" for k, v in final.items() if k.startswith("top") and k != "top1"), "")
        lines.append(f"  final     test accuracy {final['top1']:.4f}{top5}, macro-F1 {final['macro_f1']:.4f} on {final['n']} images")
    lines += [f"  {line}" for line in confidence_lines(summary)]
    if summary.get("skipped_images"):
        lines.append(f"  skipped   {len(summary['skipped_images'])} bad image(s), listed in {run.path / 'skipped_images.txt'}")
    lines.append(f"  wall time {summary.get('wall_seconds', 0):.1f} s; outputs in {run.path}")
    return "\n".join(lines)
