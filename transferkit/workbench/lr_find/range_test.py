"""The learning-rate range test's maths (Smith 2017, section 3.3; fastai's ``lr_find``): the
exponential LR schedule, the run of steps with bias-corrected EMA smoothing and the 4x stop, and
the suggestion read off a centred median + mean of the losses (see ``transferkit.workbench.lr_find``).
Nothing here knows about models: ``range_test`` calls a ``step(lr) -> loss`` it is given."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ...progress import progress

BETA = 0.98
DIVERGENCE_FACTOR = 4.0


@dataclass
class RangeTrace:
    """The learning rates tried and the (raw, smoothed) loss after each; ``stopped`` when the
    smoothed loss diverged before the last planned step."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    planned: int
    stopped: bool


@dataclass
class LRFindResult:
    phase: str
    trace: RangeTrace
    suggestion: float  # see ``suggest``
    minimum: float  # the LR at the minimum of the ``level`` curve
    method: str  # "steepest descent" or "rise / 10"
    recipe_key: str
    recipe_value: float
    folder: Path | None = None
    # said instead of "set KEY = VALUE" when the recipe does not use that key (phase 1 as a probe)
    unused: str = ""

    @property
    def min_over_10(self) -> float:
        return self.minimum / 10.0

    @property
    def diverged_at(self) -> float | None:
        return self.trace.lrs[-1] if self.trace.stopped else None

    def format(self) -> str:
        t = self.trace
        stop = f"stopped at lr {t.lrs[-1]:.3g} (smoothed loss over {DIVERGENCE_FACTOR:g}x its best)" if t.stopped \
            else f"ran all {t.planned} steps"
        lines = [
            f"lr-find ({self.phase}): {len(t.lrs)} steps from {t.lrs[0]:.3g} to {t.lrs[-1]:.3g}, {stop}",
            f"suggested lr {self.suggestion:.3g} ({METHODS[self.method]}); minimum at {self.minimum:.3g},"
            f" minimum/10 = {self.min_over_10:.3g}",
            self.advice(),
        ]
        if self.folder is not None:
            lines.append(f"plot and data: {self.folder}")
        return "\n".join(lines)

    def advice(self) -> str:
        """What to set in the recipe, or why the value found is not for this recipe."""
        return self.unused or f"set {self.recipe_key} = {self.recipe_value:.2g}" + self._key_note()

    def _key_note(self) -> str:
        if self.recipe_key != "phases.finetune.lr_ratio":
            return ""
        note = f" (the finetune LR {self.suggestion:.2g} = phases.extract.lr x phases.finetune.lr_ratio)"
        if self.recipe_value > 10:
            note += f"; lr_ratio allows at most 10: set phases.finetune.lr = {self.suggestion:.2g} instead"
        return note


def exponential_lrs(start: float, end: float, steps: int) -> list[float]:
    """``steps`` learning rates from ``start`` to ``end``, equally spaced in log."""
    if steps == 1:
        return [float(start)]
    return [float(start * (end / start) ** (i / (steps - 1))) for i in range(steps)]


def range_test(
    step: Callable[[float], float], lrs: Sequence[float], *, beta: float = BETA, divergence: float = DIVERGENCE_FACTOR,
    desc: str = "lr-find",
) -> RangeTrace:
    """Call ``step(lr)`` (one optimizer step at ``lr``, returning the batch loss) for each LR in
    turn; smooth the losses (EMA with bias correction) and stop when the smoothed loss exceeds
    ``divergence`` x its best so far, or is not finite."""
    trace = RangeTrace([], [], [], len(lrs), False)
    average, best = 0.0, math.inf
    bar = progress(lrs, desc=desc, unit="step")
    for i, lr in enumerate(bar):
        loss = float(step(lr))
        average = beta * average + (1 - beta) * loss
        smoothed = average / (1 - beta ** (i + 1))
        trace.lrs.append(float(lr))
        trace.losses.append(loss)
        trace.smoothed.append(smoothed)
        bar.set_postfix(lr=f"{lr:.2e}", loss=f"{smoothed:.4f}")
        if not math.isfinite(smoothed) or smoothed > divergence * best:
            trace.stopped = i + 1 < len(lrs)
            break
        best = min(best, smoothed)
    bar.close()
    return trace


METHODS = {
    "steepest descent": "steepest descent of the smoothed loss",
    "rise / 10": "no clear descent: a tenth of the LR where the loss starts to rise",
}


def level(trace: RangeTrace) -> np.ndarray:
    """The raw losses smoothed by a centred rolling median, then a centred rolling mean, each over
    ``max(5, 8% of the planned steps)`` points (9 of 100, under a decade of LR), the windows
    shrinking at the ends. Centred windows have no lag; the median ignores single spikes and
    keeps a monotone stretch where it is, the mean steadies its slope; the blow-up at the end
    reaches back at most one window. Non-finite losses count as +inf."""
    raw = np.asarray(trace.losses, dtype=float)
    raw = np.where(np.isnan(raw), np.inf, raw)
    half = max(5, int(round(0.08 * trace.planned))) // 2
    median = np.array([np.median(raw[max(0, i - half) : i + half + 1]) for i in range(len(raw))])
    with np.errstate(invalid="ignore"):  # inf - inf where the loss diverged
        return np.array([np.mean(median[max(0, i - half) : i + half + 1]) for i in range(len(raw))])


def suggest(trace: RangeTrace) -> tuple[float, float, str]:
    """(suggested LR, LR at the minimum, method) from the ``level`` curve, the point the
    test stopped on left out. ``margin`` is three robust standard deviations of the raw loss
    around that curve (1.4826 x the median absolute deviation), at least 2% of the minimum: a
    descent smaller than that is noise. With a descent, the LR of the steepest slope between the
    first tenth of the points and the minimum; without, a tenth of the first LR past the minimum
    where the curve exceeds minimum + margin (or of the last LR when it never does), clipped to
    the first LR."""
    usable = len(trace.lrs) - 1 if trace.stopped else len(trace.lrs)
    lrs, curve = np.asarray(trace.lrs[:usable]), level(trace)[:usable]
    raw = np.asarray(trace.losses[:usable], dtype=float)
    if usable < 3 or not np.isfinite(curve).any():
        return trace.lrs[0], trace.lrs[0], "rise / 10"
    lowest = int(np.argmin(curve))
    finite = np.isfinite(raw) & np.isfinite(curve)
    noise = 1.4826 * float(np.median(np.abs(raw[finite] - curve[finite])))
    margin = max(3.0 * noise, 0.02 * abs(float(curve[lowest])))
    skip = max(1, usable // 10)
    if lowest - skip >= 2 and curve[skip] - curve[lowest] > margin:
        window = slice(skip, lowest + 1)
        slope = np.gradient(curve[window], np.log10(lrs[window]))
        return float(lrs[window][int(np.argmin(slope))]), float(lrs[lowest]), "steepest descent"
    above = np.nonzero(curve[lowest:] > curve[lowest] + margin)[0]
    rise = float(lrs[lowest + above[0]]) if above.size else float(lrs[-1])
    return max(rise / 10.0, float(lrs[0])), float(lrs[lowest]), "rise / 10"
