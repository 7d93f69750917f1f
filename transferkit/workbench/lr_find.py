"""``transferkit lr-find RECIPE``: Leslie Smith's learning-rate range test (Smith 2017, "Cyclical
learning rates for training neural networks", section 3.3), as fastai's ``lr_find`` runs it.

One phase is set up as the engine sets it up, then trained for ``--steps`` steps, one batch each,
while the learning rate grows exponentially from ``--start`` to ``--end``:

- ``extract``: backbone frozen, BatchNorm in eval mode, the head trains (on cached backbone
  features when the recipe caches them, as phase 1 does: fast);
- ``finetune``: the head is first trained as phase 1 trains it (phase 2 starts from that head),
  then the recipe's unfreeze policy and BatchNorm mode apply, with phase 2's training batches
  (augmentations, batch augmentations, label smoothing). The optimizer is the engine's, so each
  parameter group keeps its LR ratio to the base LR and all groups are scaled together.

The loss is smoothed by an exponential moving average with bias correction (beta = 0.98, as
fastai), and the test stops once the smoothed loss exceeds 4x the best seen, or is not finite.
The suggestion is read off the losses smoothed by a centred rolling median and mean (``level``),
not off the recorded EMA, which trails the loss by decades of LR and would suggest too high a
value:

- when the loss clearly falls (by more than ``margin``), the LR at its steepest descent against
  log10(LR), looked for up to the minimum (fastai's "steep");
- when it does not (finetuning from a trained head starts at its floor: flat, then rising), a
  tenth of the LR where it starts to rise above the minimum by ``margin`` (the classic "/10").

The minimum's LR / 10 is reported beside it (``margin``: see ``suggest``).

Nothing is written until the test is over: the folder (``runs/<name>/lr-find-<timestamp>/``, or
``--output``) then gets ``lr_find.png``, ``lr_find.csv`` and ``lr_find.json``, each atomically.

Python: ``result = lr_find("r.toml", phase="extract")``; ``result.suggestion``, ``result.folder``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from ..errors import RecipeError

if TYPE_CHECKING:
    import numpy as np

    from ..recipe import Recipe
    from ..recipe_loading import RecipeSource

NAME = "lr-find"
HELP = "learning-rate range test for a phase: a plot of loss against LR, the data, and a suggested LR for the recipe"
BETA = 0.98
DIVERGENCE_FACTOR = 4.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. data.root=DIR")
    parser.add_argument("--phase", choices=["extract", "finetune"], default="extract",
                        help="the phase whose LR to find (default extract)")
    parser.add_argument("--steps", type=int, default=100, metavar="N", help="optimizer steps, one batch each (default 100)")
    parser.add_argument("--start", type=float, default=1e-7, metavar="LR", help="first learning rate (default 1e-7)")
    parser.add_argument("--end", type=float, default=10.0, metavar="LR", help="last learning rate (default 10)")
    parser.add_argument("--output", metavar="DIR", help="output folder (default runs/<name>/lr-find-<timestamp>)")


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
            f"set {self.recipe_key} = {self.recipe_value:.2g}" + self._key_note(),
        ]
        if self.folder is not None:
            lines.append(f"plot and data: {self.folder}")
        return "\n".join(lines)

    def _key_note(self) -> str:
        if self.recipe_key != "phases.finetune.lr_ratio":
            return ""
        note = f" (the finetune LR {self.suggestion:.2g} = phases.extract.lr x phases.finetune.lr_ratio)"
        if self.recipe_value > 10:
            note += "; lr_ratio allows at most 10: raise phases.extract.lr as well"
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
    from tqdm.auto import tqdm

    trace = RangeTrace([], [], [], len(lrs), False)
    average, best = 0.0, math.inf
    bar = tqdm(lrs, desc=desc, leave=False, unit="step", dynamic_ncols=True, disable=None)
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


def level(trace: RangeTrace) -> "np.ndarray":
    """The raw losses smoothed by a centred rolling median, then a centred rolling mean, each over
    ``max(5, 8% of the planned steps)`` points (9 of 100, under a decade of LR), the windows
    shrinking at the ends. Centred windows have no lag; the median ignores single spikes and
    keeps a monotone stretch where it is, the mean steadies its slope; the blow-up at the end
    reaches back at most one window. Non-finite losses count as +inf."""
    import numpy as np

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
    import numpy as np

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


def lr_find(
    recipe: "RecipeSource",
    *,
    phase: str = "extract",
    steps: int = 100,
    start: float = 1e-7,
    end: float = 10.0,
    output: str | Path | None = None,
    dataset: Any = None,
    val_dataset: Any = None,
    write: bool = True,
    log: Callable[[str], None] | None = print,
    **overrides: Any,
) -> LRFindResult:
    """Run the range test for ``phase`` and (``write=True``) write the plot and the data. The
    recipe is a TOML path, dict or Recipe; ``overrides`` as in ``finetune`` (``data__root=...``)."""
    from ..engine.setup import prepare
    from ..recipe_loading import load_recipe

    resolved = load_recipe(recipe, overrides, check_data=dataset is None)
    _check_options(phase, steps, start, end)
    say = log or (lambda _m: None)
    prepared = prepare(resolved, dataset, val_dataset, log=say)
    step, desc = _phase_step(prepared, phase, say)
    trace = range_test(step, exponential_lrs(start, end, steps), desc=desc)
    suggestion, minimum, method = suggest(trace)
    key, value = _recipe_key(resolved, phase, suggestion)
    result = LRFindResult(phase, trace, suggestion, minimum, method, key, value)
    if write:
        from .lr_find_outputs import default_folder, write_outputs

        result.folder = write_outputs(result, Path(output) if output else default_folder(resolved), resolved)
    return result


def _check_options(phase: str, steps: int, start: float, end: float) -> None:
    if phase not in ("extract", "finetune"):
        raise RecipeError(f"--phase {phase}: must be extract or finetune")
    if steps < 5:
        raise RecipeError(f"--steps {steps}: a range test needs at least 5 steps (100 is usual)")
    if not (start > 0 and end > start):
        raise RecipeError(f"--start {start:g} --end {end:g}: need 0 < start < end, e.g. --start 1e-7 --end 10")


def _recipe_key(recipe: "Recipe", phase: str, lr: float) -> tuple[str, float]:
    if phase == "extract":
        return "phases.extract.lr", lr
    return "phases.finetune.lr_ratio", lr / recipe.phases.extract.lr


def _phase_step(prepared: Any, phase: str, log: Callable[[str], None]) -> tuple[Callable[[float], float], str]:
    """The model set up for ``phase`` as the engine sets it up, and a function doing one
    training step at a given base LR (all parameter groups scaled together)."""
    import torch

    from ..engine.feature_cache import phase1_caches
    from ..engine.optim import build_optimizer
    from ..engine.class_weights import recipe_class_weights, weights_tensor
    from ..engine.trainer import HeadOnly, configure_phase, phase_plans

    recipe, runtime = prepared.recipe, prepared.runtime
    model = prepared.model.to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    extract, finetune = phase_plans(recipe)
    configure_phase(model, extract)
    cache = phase1_caches(prepared, model.backbone, log)[0] if phase == "extract" or extract.epochs else None
    if phase == "finetune":
        _train_head(prepared, model, extract, cache, log)
        cache = None
    plan = extract if phase == "extract" else finetune
    configure_phase(model, plan)
    optimizer = build_optimizer(model, plan.lr, recipe.train)
    ratios = [group["lr"] / plan.lr for group in optimizer.param_groups]
    forward = HeadOnly(model) if cache is not None else model
    batches = _endless_batches(prepared, plan.index, cache)
    batch_augs = () if cache is not None else prepared.batch_augs
    scaler = torch.amp.GradScaler("cuda") if runtime.uses_scaler else None
    class_weights = weights_tensor(recipe_class_weights(recipe, prepared.splits.train.targets, prepared.splits.classes), runtime.device)
    log(f"lr-find {plan.name}: {sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters,"
        f" BN {'eval' if model.bn_eval else 'train'}" + (", head on cached features" if cache is not None else ""))

    def step(lr: float) -> float:
        from ..engine.loop import backward_and_step, make_targets, soft_cross_entropy

        for group, ratio in zip(optimizer.param_groups, ratios):
            group["lr"] = lr * ratio
        inputs, labels = next(batches)
        inputs, labels = runtime.to_device(inputs), labels.to(runtime.device)
        targets = make_targets(labels, len(prepared.splits.classes), recipe.train.label_smoothing)
        for aug in batch_augs:
            inputs, targets = aug(inputs, targets)
        model.train()
        with runtime.autocast():
            logits = forward(inputs)
        loss = soft_cross_entropy(logits, targets, class_weights)
        if not torch.isfinite(loss):
            return loss.item()
        backward_and_step(loss, optimizer, scaler, recipe.train.grad_clip)
        return loss.item()

    return step, f"lr-find {plan.name}"


def _train_head(prepared: Any, model: Any, plan: Any, cache: Any, log: Callable[[str], None]) -> None:
    """Phase 1 as the engine runs it (the finetune phase starts from its head), without the
    run directory: the recipe's extract epochs, cosine schedule, cached features when on."""
    import torch

    from ..data.loaders import EpochBatchSampler, TransformedDataset, make_loader
    from ..engine.class_weights import recipe_class_weights, weights_tensor
    from ..engine.loop import StepSettings, train_epoch
    from ..engine.optim import build_optimizer, cosine_with_warmup
    from ..engine.trainer import HeadOnly

    recipe, runtime = prepared.recipe, prepared.runtime
    if plan.epochs == 0:
        return
    train_set = TransformedDataset(prepared.splits.train, prepared.train_transform, seed=recipe.seed)
    sampler = EpochBatchSampler(len(train_set), recipe.data.batch_size, shuffle=True, seed=recipe.seed)
    optimizer = build_optimizer(model, plan.lr, recipe.train)
    steps = len(sampler.batches())
    scheduler = cosine_with_warmup(optimizer, plan.epochs * steps, int(round(plan.warmup_epochs * steps)))
    scaler = torch.amp.GradScaler("cuda") if runtime.uses_scaler else None
    settings = StepSettings(len(prepared.splits.classes), recipe.train.label_smoothing,
                            () if cache is not None else prepared.batch_augs, recipe.train.grad_clip,
                            class_weights=weights_tensor(recipe_class_weights(recipe, prepared.splits.train.targets,
                                                                              prepared.splits.classes), runtime.device))
    forward = HeadOnly(model) if cache is not None else model
    log(f"training the head first, as phase extract does ({plan.epochs} epochs at lr {plan.lr:g})")
    for epoch in range(plan.epochs):
        key = plan.index * 100_000 + epoch
        sampler.set_epoch(key)
        train_set.set_epoch(key)
        batches = cache.batches(sampler, view=epoch) if cache is not None else make_loader(train_set, sampler, recipe.data.num_workers)
        stats = train_epoch(model, forward, batches, optimizer, scheduler, runtime, settings, scaler,
                            where=f"head, epoch {epoch + 1}/{plan.epochs}", total=len(sampler))
    log(f"  head after phase extract: loss {stats['loss']:.4f}, train acc {stats['acc']:.3f}")


def _endless_batches(prepared: Any, phase_index: int, cache: Any) -> Iterator[tuple[Any, Any]]:
    """Training batches epoch after epoch, in the engine's order (seeded per epoch)."""
    from ..data.loaders import EpochBatchSampler, TransformedDataset, make_loader

    recipe = prepared.recipe
    train_set = TransformedDataset(prepared.splits.train, prepared.train_transform, seed=recipe.seed)
    sampler = EpochBatchSampler(len(train_set), recipe.data.batch_size, shuffle=True, seed=recipe.seed)
    loader = make_loader(train_set, sampler, recipe.data.num_workers)
    epoch = 0
    while True:
        key = phase_index * 100_000 + epoch
        sampler.set_epoch(key)
        train_set.set_epoch(key)
        yield from (cache.batches(sampler, view=epoch) if cache is not None else loader)
        epoch += 1


def run(args: argparse.Namespace) -> int:
    from ..recipe_loading import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    _check_options(args.phase, args.steps, args.start, args.end)
    result = lr_find(recipe, phase=args.phase, steps=args.steps, start=args.start, end=args.end, output=args.output)
    print(result.format())
    return 0
