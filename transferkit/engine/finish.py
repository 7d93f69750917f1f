"""The end of a run, on rank 0: the final model (with its temperature and rejection rule), the
figures, ``summary.json``, and the summary printed."""

from __future__ import annotations

from typing import Any, Callable

from ..data.decoding import DecodeReport
from .evaluation.plots import plot_confusion, plot_curves, plot_reliability
from .final.confidence import ConfidenceFit, confidence_lines
from .prepare import Prepared
from .run_summary import RunSummary
from .rundir.model_files import write_prepared_model
from .rundir.run_dir import RunDir


def write_outputs(
    prepared: Prepared, run: RunDir, summary: RunSummary, final_model: Any, best_top1: float, confidence: ConfidenceFit,
    wall_seconds: Callable[[], float], log: Callable[[str], None],
) -> None:
    """Write the final model (the averaged one when the recipe averages), its plots, and the
    summary (completed with the run's names, the decoding report and the wall time)."""
    recipe, report = prepared.recipe, prepared.decode_report
    log("writing the model, figures and summary")
    write_prepared_model(prepared, final_model, run.path, confidence.manifest_entries())
    plot_curves(run.read_metrics(), run.path / "curves.png")
    if confidence.reliability is not None:
        before, after = confidence.reliability
        plot_reliability(before, after, run.reliability_plot, confidence.reliability_split, confidence.calibration.temperature)
    if summary.final_figures is not None:
        plot_confusion(summary.final_figures["confusion_matrix"], prepared.splits.classes, run.path / "confusion_matrix.png",
                       "test" if summary.test is not None else "val")
    summary.name, summary.classes, summary.device = recipe.name, prepared.splits.classes, prepared.runtime.describe()
    summary.backbone, summary.best_val_or_train_top1 = recipe.backbone.name, best_top1
    _decoding(summary, report)
    summary.wall_seconds = wall_seconds()
    run.write_json(run.summary_file, summary.to_dict())
    log(format_summary(summary, run))


def _decoding(summary: RunSummary, report: DecodeReport) -> None:
    if report.bad:
        summary.skipped_images = [{"file": f, "reason": r} for f, r in report.bad]
    if report.leaks:
        summary.leakage = report.leaks
    summary.decode_seconds = report.seconds


def format_summary(summary: RunSummary, run: RunDir) -> str:
    lines = ["", f"summary ({summary.name}, {summary.device}):"]
    for name, info in summary.phases.items():
        shown = f"test accuracy {info.test_top1:.4f}" if info.test_top1 is not None else "no test split"
        lines.append(f"  {name:<9} {shown}, {info.seconds:.1f} s training, {info.trainable_parameters:,} trainable parameters")
    final, raw, chosen = summary.test, summary.test_raw, summary.final or {}
    if chosen.get("chosen") not in (None, "last", "finetuned") and summary.test_finetuned:
        lines.append(f"  finetuned test accuracy {summary.test_finetuned['top1']:.4f} (last weights)")
        weights = chosen.get("weights") or {}
        how = (f"the probe + fine-tuned ensemble, weighted {weights.get('probe', 0.5):.2f}/{weights.get('finetuned', 0.5):.2f}"
               if chosen.get("policy") == "ensemble" else f"chosen on {chosen.get('chosen_on', 'validation')}")
        lines.append(f"  {chosen['chosen']:<9} test accuracy {final['top1']:.4f} ({how}, exported)")
    elif raw is not None:
        lines.append(f"  raw       test accuracy {raw['top1']:.4f} (last weights)")
        lines.append(f"  {summary.averager or 'averaged':<9} test accuracy {final['top1']:.4f} (averaged weights, exported)")
    if final is not None:
        top5 = next((f", {k} {v:.4f}" for k, v in final.items() if k.startswith("top") and k != "top1"), "")
        lines.append(f"  final     test accuracy {final['top1']:.4f}{top5}, macro-F1 {final['macro_f1']:.4f} on {final['n']} images")
    lines += [f"  {line}" for line in confidence_lines(summary.to_dict())]
    if summary.skipped_images:
        lines.append(f"  skipped   {len(summary.skipped_images)} bad image(s), listed in {run.path / 'skipped_images.txt'}")
    lines.append(f"  wall time {summary.wall_seconds or 0:.1f} s; outputs in {run.path}")
    return "\n".join(lines)
