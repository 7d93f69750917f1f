"""A whole run on one screen (``run_recipe``): prepare -> train the phases -> choose the final
weights -> calibrate -> write, each step one call into its own home:

    prepare.prepare                            the splits, the model, the transforms, the runtime
    training.trainer.Trainer.fit               phase 1 (the probe), phase 2 (fine-tuning) -> TrainedRun
    final.final_weights.choose_final_weights   probe, WiSE-FT or fine-tuned; on val or out-of-fold
    final.confidence.fit_confidence            the temperature and the rejection rule
    finish.write_outputs                       model files, figures, summary.json (rank 0)

Around them, each a visible branch: a new run or a reopened one (``resume.reopen``: ``--resume``,
``--extend``), the run directory and its lock, several processes (every rank trains and
predicts; rank 0 writes), and clean stops on SIGINT / SIGTERM."""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..errors import BadFilesError, TransferkitError
from ..models.readout import STAGES, readout_of
from ..recipe import AUTO_BACKBONE, Recipe, with_backbone
from ..recipe_tasks import MULTILABEL
from .final.confidence import fit_confidence
from .final.final_weights import choose_final_weights
from .finish import write_outputs
from .multilabel.run import refuse_unsupported, run_multilabel
from .preflight.backbone_ranking import BackboneRanking, resolve_auto_backbone
from .prepare import Prepared, prepare
from .resume import Reopened, reopen, reopen_for_more_epochs
from .rundir.model_files import load_classifier
from .rundir.run_dir import RunDir
from .rundir.tensorboard_sink import require_tensorboard, tensorboard_sink
from .runtime.device import resolve_runtime
from .runtime.distributed import DistContext, init_distributed
from .runtime.stop_signals import StopRequest, interrupted, stop_signals
from .splits import build_splits
from .training.trained_run import TrainedRun
from .training.trainer import Trainer


@dataclass
class RunResult:
    """What ``finetune`` hands back: where the run is, its summary (``summary.json``'s content),
    and the trained model."""

    run_dir: Path
    summary: dict[str, Any]
    model: Any

    @property
    def test_accuracy(self) -> float | None:
        """Test top-1 (None without a test split, and for a multi-label run: ``test_map``)."""
        test = self.summary.get("test")
        return test.get("top1") if test else None

    @property
    def test_map(self) -> float | None:
        """A multi-label run's test macro mean average precision."""
        test = self.summary.get("test")
        return test.get("macro_map") if test else None


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
    if recipe.task == MULTILABEL:  # its own flow: a single-label run does not change
        refuse_unsupported(resume, dataset, dist.enabled)
        return RunResult(*run_multilabel(recipe, output=output, log=_printable(log)))
    log = _printable(log) if dist.is_main else _silent
    if extend and resume is None:
        raise TransferkitError("--extend: give the run to train further with --resume RUN_DIR")
    reopened = reopen(recipe, resume, extend, dataset, dist.world_size) if resume is not None else None
    ranking = None
    if reopened is not None:
        if reopened.finished:
            dist.leave_at_exit()
            return finished_result(reopened.run, log)
        recipe = reopened.recipe
    else:
        if output is not None and dist.is_main:
            RunDir.check_new(output)  # before minutes of decoding
        recipe, ranking = _auto_backbone(recipe, dataset, val_dataset, test_dataset, dist, log)
    # SIGINT and SIGTERM alike; across processes every rank must stop at the same step, so there
    # the first signal stops at once (the last checkpoint is kept)
    with stop_signals(graceful=not dist.enabled) as stop:
        prepared = _prepare(recipe, dataset, val_dataset, test_dataset, output, reopened, dist, log)
        run = reopened.run if reopened is not None else _new_run_dir(recipe, output, dist)
        with run.lock() if dist.is_main else nullcontext(), _kept_on_interrupt(run, dist):
            _open(run, prepared, reopened, dist, log)
            trained = _train(prepared, run, reopened, on_step, dist, stop, log)
            final = choose_final_weights(trained, log)
            confidence = fit_confidence(prepared, final.model, dist=dist, log=log, evidence=final.evidence,
                                        predictions=trained.predictions, weights=final.name)
            confidence.record(trained.summary)
            if ranking is not None:
                trained.summary.extra["backbone_ranking"] = ranking.to_dict()
            if dist.is_main:
                write_outputs(prepared, run, trained.summary, final.model, trained.best_top1, confidence,
                              wall_seconds=lambda: time.perf_counter() - started, log=log)
            dist.barrier()  # rank 0 wrote the outputs
            dist.leave_at_exit()
            return RunResult(run.path, trained.summary.to_dict(), final.model.cpu().eval())


def _prepare(
    recipe: Recipe, dataset: Any, val_dataset: Any, test_dataset: Any, output: str | Path | None, reopened: Reopened | None,
    dist: DistContext, log: Callable[[str], None],
) -> Prepared:
    """``prepare``, its bad files listed in the run's folder, a stop during decoding explained."""
    try:
        return prepare(recipe, dataset, val_dataset, test_dataset, log=log)
    except BadFilesError as exc:
        raise _listed(exc, recipe, output, reopened.run.path if reopened is not None else None, dist) from None
    except KeyboardInterrupt as exc:
        raise interrupted(reopened.run if reopened is not None else None, exc) from None


def _auto_backbone(
    recipe: Recipe, dataset: Any, val_dataset: Any, test_dataset: Any, dist: DistContext, log: Callable[[str], None],
) -> tuple[Recipe, BackboneRanking | None]:
    """``backbone.name = "auto"``: rank 0 ranks the candidates on the run's own training and
    validation images, every rank trains its choice."""
    if recipe.backbone.name != AUTO_BACKBONE:
        return recipe, None
    chosen, ranking = (resolve_auto_backbone(recipe, build_splits(recipe, dataset, val_dataset, test_dataset), log)
                       if dist.is_main else (recipe, None))
    name = dist.broadcast(chosen.backbone.name if dist.is_main else None)
    return (chosen if dist.is_main else with_backbone(recipe, name)), ranking


def _new_run_dir(recipe: Recipe, output: str | Path | None, dist: DistContext) -> RunDir:
    """Rank 0 creates and names the directory (its timestamp); the others follow."""
    return RunDir(dist.broadcast(str(RunDir.create(recipe, output).path) if dist.is_main else None))


@contextmanager
def _kept_on_interrupt(run: RunDir, dist: DistContext) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) while training: one line saying what is kept and how to resume."""
    try:
        yield
    except KeyboardInterrupt as exc:
        if not dist.is_main:
            raise
        raise interrupted(run, exc) from None


def _open(run: RunDir, prepared: Prepared, reopened: Reopened | None, dist: DistContext, log: Callable[[str], None]) -> None:
    """The run directory made ready: a new run's leftovers removed; the recipe (a new run's, or an
    extended one's) and the splits written. An extended run is unfinished again until its added
    epochs are done."""
    if reopened is not None and reopened.extended:
        reopen_for_more_epochs(reopened.checkpoint)  # every rank: a phase that stopped early trains on
    if not dist.is_main:
        return
    if reopened is None:
        removed = run.remove_leftovers()
        if removed:
            log(f"removed what a run that died before its first checkpoint left in {run.path}: {', '.join(removed)}")
    if reopened is None or reopened.extended:
        run.write_recipe(prepared.recipe)
    if reopened is not None and reopened.extended:
        phases = prepared.recipe.phases
        log(f"extending {run.path}: " + ", ".join(f"{name} to {getattr(phases, name).epochs} epochs" for name in reopened.phases))
        run.summary_file.unlink(missing_ok=True)
    run.write_splits(prepared.splits)


def _train(
    prepared: Prepared, run: RunDir, reopened: Reopened | None, on_step: Any, dist: DistContext, stop: StopRequest,
    log: Callable[[str], None],
) -> TrainedRun:
    """Both phases, from the reopened run's checkpoint when there is one."""
    recipe, report = prepared.recipe, prepared.decode_report
    log(f"run directory: {run.path}")
    log(
        f"data: {len(prepared.splits.train)} train, {len(prepared.splits.val or [])} val, "
        f"{len(prepared.splits.test or [])} test images, {len(prepared.splits.classes)} classes; "
        f"backbone {recipe.backbone.name} ({prepared.model.backbone.weights_origin}), {_reads(prepared.model.backbone)};"
        f" device {prepared.runtime.describe()}"
    )
    if report.bad and dist.is_main:
        run.write_text(run.skipped_images_file, "".join(f"{f}\t{r}\n" for f, r in report.bad))
        shown = "; ".join(f"{f}: {r}" for f, r in report.bad[:BadFilesError.SHOWN])
        more = f"; ... and {len(report.bad) - BadFilesError.SHOWN} more" if len(report.bad) > BadFilesError.SHOWN else ""
        log(f"skipped {len(report.bad)} bad image(s) (data.on_bad_image = \"skip\"): {shown}{more};"
            f" all listed in {run.skipped_images_file}")
    with tensorboard_sink(recipe, run, enabled=dist.is_main) as tensorboard_steps:
        trainer = Trainer(prepared, run, on_step=list(on_step or []) + tensorboard_steps, log=log, dist=dist, stop=stop)
        return trainer.fit(reopened.checkpoint if reopened is not None else None)


def finished_result(run: RunDir, log: Callable[[str], None]) -> RunResult:
    """``--resume`` of a finished run: nothing to train, nothing rewritten; its summary and model."""
    summary = run.read_summary()
    figure = summary.get("test") or summary.get("val")
    shown = f"{'test' if summary.get('test') else 'validation'} accuracy {figure['top1']:.4f}" if figure else "no test figure"
    log(f"{run.path}: the run is finished ({shown}); nothing to resume. To train more:"
        f" --resume {run.path} --extend finetune=+2")
    return RunResult(run.path, summary, load_classifier(run.path)[0])


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


def _printable(log: Callable[[str], None]) -> Callable[[str], None]:
    """File names that are not UTF-8 (surrogate escapes) shown as ``\\udcff`` instead of making a
    strict stdout raise in the middle of a run."""
    return lambda message: log(message.encode("utf-8", "backslashreplace").decode("utf-8"))


def _reads(backbone: Any) -> str:
    """What the head reads, in words: "head on 1712 features (pooled + the last 2 stages)"."""
    what = f"pooled + the last {STAGES} stages" if readout_of(backbone) == "stages" else "pooled"
    return f"head on {backbone.num_features} features ({what})"
