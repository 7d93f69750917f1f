"""A whole multi-label run on one screen (``run_multilabel``): prepare -> phase 1 (the probe) ->
phase 2 (fine-tuning) -> the final weights -> the thresholds -> the test figures -> write.

Written like a single-label run's folder: ``recipe.toml``, ``splits.csv`` (the labels of each
image, joined by the recipe's separator), ``metrics.jsonl``, ``checkpoints/phase1.safetensors``,
the model (``model.safetensors`` and ``manifest.json`` with ``task`` and ``thresholds``),
``pr_curves.png``, ``curves.png`` and ``summary.json`` (``task``: ``"multilabel"``; ``test``: the
figures of ``evaluation.multilabel_metrics``). Not resumable yet: a stopped run starts again."""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...data.multilabel_csv import MultiLabelData
from ...errors import TransferkitError
from ...recipe import EXTRACT, FINETUNE, Recipe
from ...recipe_tasks import MULTILABEL
from ..evaluation.multilabel_metrics import multilabel_metrics
from ..prepare import Prepared
from ..run_summary import RunSummary
from ..rundir.manifest_task import multilabel_entries
from ..rundir.model_files import write_prepared_model, write_weights
from ..rundir.run_dir import RunDir
from ..training.phases import phase1_caches
from .figures import plot_multilabel_curves, plot_pr_curves
from .final import choose_weights, fit_thresholds
from .phases import Known, finetune, fit_probe, probabilities, val_scores
from .prepare import prepare_multilabel


def run_multilabel(
    recipe: Recipe, *, output: str | Path | None = None, log: Callable[[str], None] = print,
) -> tuple[Path, dict[str, Any], Any]:
    """Train a multi-label recipe end to end; returns the run folder, its summary and the model."""
    started = time.perf_counter()
    if output is not None:
        RunDir.check_new(output)  # before minutes of decoding
    prepared, data = prepare_multilabel(recipe, log)
    run = RunDir.create(recipe, output)
    with run.lock():
        run.write_recipe(prepared.recipe)
        _write_splits(run, prepared, data)
        summary = RunSummary()
        summary.extra.update(task=MULTILABEL, label_counts=data.counts())
        model = prepared.model.to(prepared.runtime.device)
        splits = prepared.splits
        log(f"run directory: {run.path}")
        log(f"data: {len(splits.train)} train, {len(splits.val or [])} val, {len(splits.test or [])} test images,"
            f" {len(data.labels)} labels (multi-label);"
            f" backbone {recipe.backbone.name} ({model.backbone.weights_origin}); device {prepared.runtime.describe()}")
        known: Known = {}  # (candidate, split) -> probabilities: each predicted once
        probe_state, val_cache = _phase1(prepared, data, model, run, summary, log, known)
        if recipe.phases.finetune.epochs > 0:
            info = summary.phase(FINETUNE)
            info.seconds, averaged = finetune(prepared, data, model, log, run.append_metrics, known)
            known[("finetuned", "test")] = _test_line(prepared, data, model, summary, FINETUNE, log, probe=False)
            if averaged is not None:  # the phase's result, as in a single-label run: the averaged weights
                summary.averager = recipe.averaging.name if recipe.averaging is not None else None
                model = averaged
                known[("finetuned", "test")] = _test_line(prepared, data, model, summary, FINETUNE, log, probe=False,
                                                          weights=summary.averager)
        final = choose_weights(prepared, data, model, probe_state, val_cache, log, known)
        if final.alpha == 0.0:
            prepared.eval_transform = prepared.probe_preprocessing  # the probe is evaluated and exported at its own
        thresholds = fit_thresholds(prepared, data, final, log)
        summary.final, summary.extra["thresholds"] = final.info, thresholds
        figures = _final_figures(prepared, data, final.model, final.alpha == 0.0, thresholds["values"],
                                 known.get((final.info["chosen"], "test")))
        if figures is not None:
            split, probs, targets, metrics = figures
            setattr(summary, split, metrics)
            run.append_metrics({"kind": split, "phase": "final", "weights": final.info["chosen"],
                                **{k: v for k, v in metrics.items() if not k.startswith("per_label")}})
            plot_pr_curves(probs, targets, data.labels, thresholds["values"], run.path / "pr_curves.png", split)
        log("writing the model, figures and summary")
        write_prepared_model(prepared, final.model, run.path,
                             task=multilabel_entries(thresholds["values"], thresholds["rule"]))
        plot_multilabel_curves(run.read_metrics(), run.path / "curves.png")
        summary.name, summary.classes, summary.device = recipe.name, data.labels, prepared.runtime.describe()
        summary.backbone, summary.decode_seconds = recipe.backbone.name, prepared.decode_report.seconds
        summary.wall_seconds = time.perf_counter() - started
        run.write_json(run.summary_file, summary.to_dict())
        log(format_multilabel_summary(summary.to_dict(), run.path))
    return run.path, summary.to_dict(), final.model.cpu().eval()


def _phase1(prepared: Prepared, data: MultiLabelData, model: Any, run: RunDir, summary: RunSummary, log: Callable[[str], None],
            known: Known) -> Any:
    """The probe; its weights kept (WiSE-FT's start) and its figures recorded (its test probabilities into ``known``)."""
    info = summary.phase(EXTRACT)
    started = time.perf_counter()
    train_cache, val_cache = phase1_caches(prepared, model.backbone, log)
    assert train_cache is not None  # the recipe's check: phase 1 is a probe on cached features
    info.feature_cache_seconds = time.perf_counter() - started
    fit = fit_probe(prepared, data, model, train_cache, log)
    info.probe, info.seconds = fit.summary(), time.perf_counter() - started
    train_targets = torch.as_tensor(data.targets(train_cache.targets.numpy()), dtype=torch.float64)
    train_loss = F.binary_cross_entropy_with_logits(fit.logits(train_cache.features[0]).double(), train_targets).item()
    record: dict[str, Any] = {"kind": "epoch", "phase": EXTRACT, "epoch": 1, "train_loss": train_loss, "seconds": info.seconds,
                              "images": len(train_cache)}
    if prepared.splits.val is not None:
        record.update(val_scores(prepared, data, model, prepared.splits.val, "val", probe=True, cached=val_cache))
    run.append_metrics(record)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    write_weights(state, run.checkpoints, run.phase1_weights.name)
    known[("probe", "test")] = _test_line(prepared, data, model, summary, EXTRACT, log, probe=True)
    return state, val_cache


def _test_line(prepared: Prepared, data: MultiLabelData, model: Any, summary: RunSummary, phase: str, log: Callable[[str], None],
               probe: bool, weights: str | None = None) -> np.ndarray | None:
    """A phase's test macro mAP, as its end leaves the model (``weights``: the averager's); its test
    probabilities (None without a test split)."""
    if prepared.splits.test is None:
        return None
    probs = probabilities(prepared, model, prepared.splits.test, "test", probe=probe)
    figures = multilabel_metrics(probs, data.targets(prepared.splits.test.targets), data.labels)
    key = "" if weights is None else "_averaged"
    summary.phase(phase).extra.update({f"test_macro_map{key}": figures["macro_map"], f"test_micro_map{key}": figures["micro_map"]})
    log(f"  {phase} test macro mAP{'' if weights is None else f' with {weights} weights'}: {figures['macro_map']:.4f}"
        f" (micro {figures['micro_map']:.4f})")
    return probs


def _final_figures(prepared: Prepared, data: MultiLabelData, model: Any, probe: bool, thresholds: list[float],
                   known_test: np.ndarray | None = None) -> Any:
    """The final weights' figures at their thresholds: on test (``known_test``: their test
    probabilities, when a phase's line already predicted them), or on validation without one."""
    split = "test" if prepared.splits.test is not None else "val" if prepared.splits.val is not None else None
    if split is None:
        return None
    images = getattr(prepared.splits, split)
    probs = known_test if split == "test" and known_test is not None else probabilities(prepared, model, images, f"{split} (final)",
                                                                                         probe=probe)
    targets = data.targets(images.targets)
    return split, probs, targets, multilabel_metrics(probs, targets, data.labels, thresholds)


def _write_splits(run: RunDir, prepared: Prepared, data: MultiLabelData) -> None:
    """``splits.csv``: split, the image's labels (joined by ``data.label_separator``), the image."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["split", "label", "image"])
    sep = prepared.recipe.data.label_separator
    for name, images in prepared.splits.parts().items():
        for i, row in enumerate(images.targets):
            labels = sep.join(data.labels[j] for j in data.matrix[row].nonzero()[0])
            writer.writerow([name, labels, os.path.abspath(images.describe(i))])
    run.write_text(run.splits_file, out.getvalue())


def format_multilabel_summary(summary: dict[str, Any], path: Path) -> str:
    lines = ["", f"summary ({summary.get('name')}, {summary.get('device')}, multi-label):"]
    for name, info in summary.get("phases", {}).items():
        shown = f"test macro mAP {info['test_macro_map']:.4f}" if info.get("test_macro_map") is not None else "no test split"
        lines.append(f"  {name:<9} {shown}, {info.get('seconds', 0.0):.1f} s")
    final = summary.get("final") or {}
    figures, split = (summary.get("test"), "test") if summary.get("test") else (summary.get("val"), "val")
    if figures:
        lines.append(f"  final     ({final.get('chosen')}) {split} macro mAP {figures['macro_map']:.4f}, micro mAP"
                     f" {figures['micro_map']:.4f}; at the thresholds ({summary['thresholds']['rule']}): macro-F1"
                     f" {figures['macro_f1']:.4f}, subset accuracy {figures['subset_accuracy']:.4f} on {figures['n']} images")
    lines.append(f"  wall time {summary.get('wall_seconds') or 0:.1f} s; outputs in {path}")
    return "\n".join(lines)


def refuse_unsupported(resume: Any, dataset: Any, distributed: bool) -> None:
    """What ``finetune`` takes for a single-label run and a multi-label one does not (yet)."""
    for given, what in ((resume is not None, "--resume (a multi-label run is not resumable yet; start it again)"),
                        (dataset is not None, "a Python dataset (give a CSV manifest as data.root)"),
                        (distributed, "several processes (torchrun); run it in one")):
        if given:
            raise TransferkitError(f'task = "multilabel": {what}')
