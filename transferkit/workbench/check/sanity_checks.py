"""``transferkit check RECIPE``: three quick sanity checks before a long run (the first steps of
Karpathy's "A recipe for training neural networks"), on a few batches of the training split,
with the evaluation transform (no augmentation), weight decay, dropout and label smoothing off:

1. **initial loss** — the untrained head's cross-entropy against ln(C): a freshly initialised
   head predicts near-uniformly, so anything far from ln(C) means the head, the features or the
   labels are not what they should be;
2. **overfit** — the head trains on the cached backbone features of ``--batches`` batches (or the
   whole model as phase 2 trains it, with ``--full-model``) and must reach 100% training accuracy;
   if not, the loss curve says whether the learning rate is too high or too low;
3. **labels** — a probe built on those batches must classify *other* training images better than
   chance. A head can memorise even random labels, so memorising alone proves little; what was
   learned has to carry over to images it has not seen, which it cannot when the labels are
   shuffled or unrelated to the images.

Python: ``report = transferkit.check("r.toml", dataset=...)``; ``report.passed``; ``print(report.format())``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.preprocessing import Preprocessing
from ...data.sources import ArrayImages, ImageSet
from ...engine.evaluation.predict import predict
from ...engine.prepare import build_model, build_splits, eval_preprocessing
from ...engine.rundir.checkpoint_io import seed_everything
from ...engine.runtime.device import Runtime, resolve_runtime
from ...engine.training.feature_cache import FeatureCache
from ...engine.training.phases import phase_plans, prepare_phase
from ...errors import DataError, RecipeError
from ...models.classifier import Classifier
from ...recipe import Recipe
from ...recipe_loading import RecipeSource, load_recipe

INITIAL_LOSS_TOLERANCE = 0.25  # of ln(C); see check_initial_loss
ACCURACY_TARGET = 0.99
DIVERGENCE_FACTOR = 4.0  # a loss above 4x its start diverges (lr-find stops at 4x its best, as fastai's)
NOT_DECREASING = 0.9  # a loss still above 90% of its start after all the steps did not decrease
PERMUTATIONS = 2000
ALPHA = 0.01
HELD_OUT_MAX = 128
DEFAULT_STEPS = {"head": 300, "full": 60}  # the check command's --steps help repeats these


@dataclass
class CheckResult:
    """One check: ``status`` is PASS, FAIL or SKIP; ``figures`` holds the numbers behind it."""

    name: str
    status: str
    message: str
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status != "FAIL"

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.message}"


@dataclass
class CheckReport:
    results: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def __getitem__(self, name: str) -> CheckResult:
        return next(r for r in self.results if r.name == name)

    def format(self) -> str:
        failed = [r.name for r in self.results if not r.passed]
        tail = f"check: {len(failed)} of {len(self.results)} checks failed ({', '.join(failed)})" if failed else \
            f"check: all {len(self.results)} checks passed"
        return "\n".join([r.line() for r in self.results] + [tail])


def check(
    recipe: RecipeSource,
    *,
    dataset: Any = None,
    val_dataset: Any = None,
    batches: int = 2,
    steps: int | None = None,
    full_model: bool = False,
    log: Callable[[str], None] | None = print,
    **overrides: Any,
) -> CheckReport:
    """Run the three checks on a recipe (a TOML path, dict or Recipe; ``overrides`` as in
    ``finetune``: ``data__root="..."``). ``dataset``: a map-style dataset of ``(image, label)``
    that replaces the recipe's data source. Each result line goes to ``log`` as it is known."""
    resolved = load_recipe(recipe, overrides, check_data=dataset is None)
    if batches < 1:
        raise RecipeError(f"--batches {batches}: must be at least 1")
    if steps is not None and steps < 1:
        raise RecipeError(f"--steps {steps}: must be at least 1")
    say = log or (lambda _m: None)
    data = _CheckData.build(resolved, dataset, val_dataset, batches, full_model)
    results = [check_initial_loss(data)]
    say(results[-1].line())
    results.append(check_overfit(data, steps or DEFAULT_STEPS["full" if full_model else "head"], full_model))
    say(results[-1].line())
    results.append(check_labels(data, memorised=results[1].figures.get("accuracy")))
    say(results[-1].line())
    return CheckReport(results)


@dataclass
class _CheckData:
    """The model and the images the checks share: ``fit`` (the batches to overfit) and ``held``
    (other training images), decoded once, with their backbone features (as phase 1 caches them)
    and, for --full-model, the fit images as input tensors."""

    recipe: Recipe
    model: Classifier
    runtime: Runtime
    preprocess: Preprocessing
    classes: list[str]
    batch_size: int
    fit: ImageSet
    held: ImageSet
    fit_cache: FeatureCache
    held_cache: FeatureCache
    fit_images: torch.Tensor | None = None

    @classmethod
    def build(cls, recipe: Recipe, dataset: Any, val_dataset: Any, batches: int, full_model: bool) -> "_CheckData":
        seed_everything(recipe.seed)
        splits = build_splits(recipe, dataset, val_dataset)
        model = build_model(recipe, splits.classes)
        runtime = resolve_runtime(recipe.train)
        model = model.to(runtime.device)
        if runtime.channels_last:
            model = model.to(memory_format=torch.channels_last)
        preprocess = eval_preprocessing(recipe, model.data_config)
        train, size = splits.train, recipe.data.batch_size
        order = np.random.default_rng(recipe.seed).permutation(len(train)).tolist()
        n_fit = min(batches * size, len(train) // 2) if len(train) >= 4 else len(train)
        fit = _decoded(train, order[:n_fit])
        held = _decoded(train, order[n_fit : n_fit + max(n_fit, HELD_OUT_MAX)])
        fit_images = torch.stack([preprocess(fit.load(i)) for i in range(len(fit))]) if full_model and len(fit) else None
        return cls(
            recipe, model, runtime, preprocess, list(splits.classes), min(size, n_fit), fit, held,
            _features(model, fit, preprocess, runtime, size), _features(model, held, preprocess, runtime, size), fit_images,
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def fit_features(self) -> torch.Tensor:
        return self.fit_cache.features[0]

    @property
    def held_features(self) -> torch.Tensor:
        return self.held_cache.features[0]

    @property
    def fit_labels(self) -> torch.Tensor:
        return self.fit_cache.targets

    @property
    def held_labels(self) -> torch.Tensor:
        return self.held_cache.targets

    def fit_batches(self, inputs: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(inputs[i : i + self.batch_size], self.fit_labels[i : i + self.batch_size])
                for i in range(0, len(self.fit_labels), self.batch_size)]


def _decoded(images: ImageSet, indices: list[int]) -> ArrayImages:
    """The chosen images read once (an unreadable file is one line naming it)."""
    arrays = []
    for i in indices:
        try:
            arrays.append(images.load(i))
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{images.describe(i)}: cannot read this image ({exc}); fix or remove it") from None
    return ArrayImages(arrays, [images.targets[i] for i in indices], images.classes)


def _features(model: Classifier, images: ImageSet, preprocess: Preprocessing, runtime: Runtime, batch_size: int) -> FeatureCache:
    """The backbone's features (BatchNorm in eval mode, CPU float32), computed as phase 1 caches them."""
    if len(images) == 0:
        return FeatureCache(torch.zeros(1, 0, model.backbone.num_features), torch.zeros(0, dtype=torch.long))
    cache = FeatureCache.compute(model.backbone, images, preprocess, runtime, batch_size=batch_size, desc="check features")
    # computed under inference_mode; the overfit check trains on slices of them, which must be normal tensors
    return FeatureCache(cache.features.clone(), cache.targets.clone())


def check_initial_loss(data: _CheckData) -> CheckResult:
    """Cross-entropy of the untrained head (eval mode) on the batches to overfit, against ln(C).

    Tolerance: |loss - ln C| < 0.25 ln C. A head whose logits are i.i.d. with standard deviation
    s gives an expected loss of about ln C + s^2 (1 - 1/C) / 2, so the tolerance admits logit
    spreads up to about 1 (1.05 for C = 3, 1.1 for C = 12): at most a factor e between the
    odds of typical classes, still near-uniform. Transferkit's head (weights N(0, 0.01^2), zero
    bias) on ImageNet features has a spread of about 0.2. A loss below the band means the
    untrained model already predicts the labels (a head that is not fresh, or labels leaking
    into the inputs); above it, logits too large (initialisation, or huge features) or labels
    that do not match the outputs."""

    c = data.num_classes
    expected = math.log(c)
    with torch.no_grad():
        logits = data.model.head(data.fit_features.to(data.runtime.device)).float().cpu()
        loss = float(F.cross_entropy(logits, data.fit_labels))
    spread = float(logits.std()) if logits.numel() > 1 else 0.0
    norm = float(data.fit_features.norm(dim=1).mean())
    tol = INITIAL_LOSS_TOLERANCE * expected
    figures = {"loss": loss, "ln_classes": expected, "tolerance": tol, "logit_std": spread, "feature_norm": norm,
               "images": len(data.fit_labels)}
    head = f"initial loss {loss:.4f} vs ln({c}) = {expected:.4f}"
    if not math.isfinite(loss):
        return CheckResult("initial loss", "FAIL", f"{head}: the backbone's features are not finite (NaN or inf);"
                           " check backbone.weights and the input normalisation", figures)
    if abs(loss - expected) < tol:
        return CheckResult("initial loss", "PASS", f"{head} (|difference| {abs(loss - expected):.3f} < {tol:.3f}),"
                           f" logit std {spread:.3f} on {len(data.fit_labels)} training images", figures)
    if loss > expected:
        why = (f"the untrained head's logits spread too widely (std {spread:.2f}, features of mean norm {norm:.3g}):"
               " the head's initialisation or the feature scale is wrong, or the labels do not match the outputs")
    else:
        why = ("the untrained model already predicts the labels: the head is not freshly initialised,"
               " or the labels leak into the images")
    return CheckResult("initial loss", "FAIL", f"{head} (outside ±{tol:.3f}): {why}", figures)


def check_overfit(data: _CheckData, steps: int, full_model: bool) -> CheckResult:
    """Train on the fixed batches for at most ``steps`` steps at a constant LR (the recipe's
    extract LR for the head, its finetune LR for the whole model) and the recipe's optimizer,
    without weight decay; pass at >= 99% training accuracy (evaluation mode, all the batches)."""
    recipe, model = data.recipe, data.model
    plan = phase_plans(recipe)[1 if full_model else 0]
    optimizer = prepare_phase(model, plan, recipe.train.model_copy(update={"weight_decay": 0.0}))
    model.dropout = nn.Identity()
    if full_model:
        key = "phases.finetune.lr" if recipe.phases.finetune.lr is not None else "phases.finetune.lr_ratio"
        batches, forward = data.fit_batches(data.fit_images), model
    else:
        batches, forward, key = data.fit_batches(data.fit_features), model.head, "phases.extract.lr"
    what = (f"whole model, unfreeze {plan.unfreeze}" if full_model else "head on cached features") + \
        f", {recipe.train.optimizer} lr {plan.lr:g}"
    losses: list[float] = []
    cycle_correct = cycle_seen = 0
    for step in range(steps):
        inputs, labels = batches[step % len(batches)]
        model.train()
        logits = forward(data.runtime.to_device(inputs)).float()
        loss = F.cross_entropy(logits, labels.to(data.runtime.device))
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        cycle_correct += int((logits.argmax(-1).cpu() == labels).sum())
        cycle_seen += len(labels)
        if (step + 1) % len(batches) == 0:
            if cycle_correct >= ACCURACY_TARGET * cycle_seen:
                break
            cycle_correct = cycle_seen = 0
    measured = predict(model, data.fit, data.preprocess, runtime=data.runtime, batch_size=data.batch_size,
                       features=None if full_model else data.fit_cache, desc="check").metrics()
    accuracy, final = measured["top1"], measured["loss"]
    first, done = losses[0], len(losses)
    finite = [x for x in losses if math.isfinite(x)]
    peak = max(finite) if finite else float("nan")
    figures = {"accuracy": accuracy, "initial_loss": first, "final_loss": final, "peak_loss": peak, "steps": done,
               "lr": plan.lr, "images": len(data.fit_labels), "mode": "full" if full_model else "head"}
    n = f"{len(data.fit_labels)} images ({len(batches)} batches)"
    if len(finite) < len(losses) or not math.isfinite(final):
        bad = losses[-1] if len(finite) < len(losses) else final
        return CheckResult("overfit", "FAIL", f"the loss became {bad} at step {done}"
                           f" ({what}): the learning rate is too high; lower {key} (transferkit lr-find suggests one)", figures)
    if peak > DIVERGENCE_FACTOR * first:
        at = losses.index(peak) + 1
        return CheckResult("overfit", "FAIL", f"the loss rose from {first:.3g} to {peak:.3g} at step {at}, over"
                           f" {DIVERGENCE_FACTOR:g}x its start ({what}): the learning rate is too high; lower {key}"
                           " (transferkit lr-find suggests one)", figures)
    trace = f"loss {first:.3f} -> {final:.3f} in {done} steps ({what})"
    if accuracy >= ACCURACY_TARGET:
        return CheckResult("overfit", "PASS", f"train accuracy {accuracy:.3f} on {n}, {trace}", figures)
    if final > NOT_DECREASING * first:
        return CheckResult("overfit", "FAIL", f"train accuracy {accuracy:.3f} on {n}, {trace}: the loss is not"
                           f" decreasing: the learning rate is too low; raise {key} (or --steps)", figures)
    return CheckResult("overfit", "FAIL", f"train accuracy {accuracy:.3f} on {n}, {trace}: the loss falls but the"
                       " accuracy is stuck: the labels may be inconsistent with the images (the same image under two"
                       " classes?) or the head misconfigured; if the loss is still falling, give more --steps", figures)


def check_labels(data: _CheckData, memorised: float | None = None) -> CheckResult:
    """Do the labels of the overfit batches carry over to other training images?

    The probe is the nearest class mean of centred, L2-normalised backbone features (SimpleShot,
    Wang et al. 2019): it has no learning rate, so this check does not depend on the optimisation
    the overfit check tests. Its accuracy on the held-out training images is compared with a
    permutation test: the held-out labels are shuffled 2000 times (seeded) and the p-value is the
    share of shuffles scoring at least as well. With labels related to the images a probe beats
    chance by a wide margin (p at its floor, 1/2001); with shuffled labels the observed accuracy is
    one draw of that same distribution, so it passes (wrongly) 1% of the time at p <= 0.01, the
    threshold used. Chance is the shuffles' mean accuracy (about 1/C for balanced classes)."""

    n = len(data.held_labels)
    if n < 2:
        return CheckResult("labels", "SKIP", f"only {n} training image(s) left beyond the {len(data.fit_labels)} overfit;"
                           " add images or lower --batches")
    fit, held = data.fit_features, data.held_features
    centre = fit.mean(dim=0, keepdim=True)
    fit = torch.nn.functional.normalize(fit - centre, dim=1)
    held = torch.nn.functional.normalize(held - centre, dim=1)
    present = sorted(set(data.fit_labels.tolist()))
    means = torch.stack([fit[data.fit_labels == c].mean(dim=0) for c in present])
    predicted = np.asarray(present)[(held @ means.T).argmax(dim=1).numpy()]
    truth = data.held_labels.numpy()
    accuracy = float((predicted == truth).mean())
    rng = np.random.default_rng(data.recipe.seed)
    shuffled = np.array([(predicted == rng.permutation(truth)).mean() for _ in range(PERMUTATIONS)])
    chance = float(shuffled.mean())
    p = float((1 + (shuffled >= accuracy).sum()) / (PERMUTATIONS + 1))
    figures = {"accuracy": accuracy, "chance": chance, "p_value": p, "held_out": n, "fit": len(data.fit_labels)}
    head = f"held-out accuracy {accuracy:.2f} vs chance {chance:.2f} (permutation p = {p:.4f}, {n} other training images," \
        f" nearest-class-mean probe on the {len(data.fit_labels)} overfit images)"
    if p <= ALPHA and accuracy > chance:
        return CheckResult("labels", "PASS", head, figures)
    learned = f" while the training batches were memorised (accuracy {memorised:.2f})" if memorised is not None and \
        memorised >= ACCURACY_TARGET else ""
    return CheckResult("labels", "FAIL", f"held-out accuracy {accuracy:.2f}, not above chance {chance:.2f} (permutation"
                       f" p = {p:.2f} > {ALPHA:g}, {n} other training images){learned}:"
                       " the labels look shuffled or unrelated to the images;"
                       " check the class folders (or the label column) of the training data", figures)
