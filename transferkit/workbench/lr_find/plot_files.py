"""What ``transferkit lr-find`` writes: the plot (loss against LR, log x, the suggestion marked),
the (lr, loss) data as CSV and JSON. The default folder follows the run-directory convention,
``runs/<name>/lr-find-<timestamp>``; it is filled under a temporary name and renamed into place,
so a crash leaves no half-written folder (and an existing ``--output`` gets each file atomically)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ...engine.evaluation.plots import plt  # pyplot on the Agg backend, chosen in one place
from ...engine.rundir.artifacts import atomic_write, encode_text
from ...engine.rundir.run_dir import RunDir
from ...recipe import FINETUNE, Recipe
from .range_test import BETA, DIVERGENCE_FACTOR, METHODS, LRFindResult, level

PLOT, CSV, JSON = "lr_find.png", "lr_find.csv", "lr_find.json"


def default_folder(recipe: Recipe) -> Path:
    """``runs/<name>/lr-find-<timestamp>``, with a suffix when that exists already."""
    return RunDir.timestamped(recipe.name, "lr-find-")


def write_outputs(result: LRFindResult, folder: Path, recipe: Recipe) -> Path:
    """Write the three files into ``folder`` (created whole when it does not exist yet)."""
    files = {CSV: encode_text(csv_text(result)), JSON: (json.dumps(summary(result, recipe), indent=2) + "\n").encode(),
             PLOT: plot_png(result, recipe)}
    if folder.exists():
        for name, data in files.items():
            atomic_write(folder / name, lambda fh, data=data: fh.write(data))
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for name, data in files.items():
            atomic_write(staging / name, lambda fh, data=data: fh.write(data))
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def csv_text(result: LRFindResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", "lr", "loss", "smoothed_loss"])
    t = result.trace
    for i, (lr, loss, smooth) in enumerate(zip(t.lrs, t.losses, t.smoothed)):
        writer.writerow([i + 1, repr(lr), repr(loss), repr(smooth)])
    return out.getvalue()


def summary(result: LRFindResult, recipe: Recipe) -> dict:
    t = result.trace
    return {
        "format": "transferkit.lr_find", "version": 1, "recipe": recipe.name, "phase": result.phase,
        "start": t.lrs[0], "end_reached": t.lrs[-1], "steps_planned": t.planned, "steps_run": len(t.lrs),
        "beta": BETA, "divergence_factor": DIVERGENCE_FACTOR, "stopped_early": t.stopped,
        "suggestion": {"lr": result.suggestion, "method": METHODS[result.method],
                       "minimum_lr": result.minimum, "minimum_over_10": result.min_over_10},
        "recipe_key": result.recipe_key, "recipe_value": result.recipe_value, "advice": result.advice(),
        "points": [{"lr": lr, "loss": _finite(loss), "smoothed_loss": _finite(s)} for lr, loss, s in zip(t.lrs, t.losses, t.smoothed)],
    }


def _finite(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None  # JSON has no NaN


def plot_png(result: LRFindResult, recipe: Recipe) -> bytes:
    """Raw and smoothed loss against LR (log x), the suggestion and the minimum marked."""
    t = result.trace
    lrs, raw, smooth = np.asarray(t.lrs), np.asarray(t.losses, dtype=float), np.asarray(t.smoothed, dtype=float)
    centred = level(t)
    fig, ax = plt.subplots(figsize=(10.5, 4.5))
    ax.plot(lrs, raw, color="0.7", lw=0.8, label="loss (each batch)")
    # the centred curve is the smoothed loss shown: it has no lag; the EMA (the stop rule's, causal)
    # trails the raw losses by a decade of LR and more, so it is drawn faint
    ax.plot(lrs, centred, color="C0", lw=2, label="smoothed loss (centred median + mean: no lag; the suggestion's)")
    ax.plot(lrs, smooth, color="C1", lw=0.8, ls=":", alpha=0.7, label=f"EMA (beta {BETA:g}, bias-corrected; the 4x stop rule's, lags)")

    def at(lr: float) -> float:
        return float(np.interp(np.log(lr), np.log(lrs), centred))

    ax.axvline(result.suggestion, color="C3", ls="--", lw=1)
    ax.plot([result.suggestion], [at(result.suggestion)], "o", color="C3", ms=8,
            label=f"suggested {result.suggestion:.2g} ({result.method})")
    ax.plot([result.minimum], [at(result.minimum)], "v", color="C2", ms=8,
            label=f"minimum at {result.minimum:.2g} (/10 = {result.min_over_10:.2g})")
    if t.stopped:
        ax.axvline(lrs[-1], color="0.4", ls=":", lw=1, label="stopped: smoothed loss > 4x its best")
    finite = centred[np.isfinite(centred)]
    if finite.size:
        low = float(min(finite.min(), np.min(raw[np.isfinite(raw)], initial=np.inf)))
        high = max(float(min(finite.max(), 4 * finite.min())), float(finite[0]))
        pad = 0.08 * max(high - low, 1e-3)
        ax.set_ylim(low - pad, high + pad)
    ax.set_xscale("log")
    what = "finetune base learning rate" if result.phase == FINETUNE else "learning rate"
    ax.set_xlabel(f"{what} (log scale)")
    ax.set_ylabel("training loss")
    advice = "phases.extract.lr: unused by the probe" if result.unused else f"set {result.recipe_key} = {result.recipe_value:.2g}"
    ax.set_title(f"{recipe.name}: LR range test, phase {result.phase} — {advice}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
