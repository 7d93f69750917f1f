"""The final weights chosen on every labelled image, not on a validation split of a few dozen
(``train.folds``).

With a few hundred images the validation split holds 20-30: one image is 3-5 points, and the
choice between the probe, the fine-tuned model and their WiSE-FT interpolations is mostly noise.
Cross-fitting uses the whole labelled pool (train + val) instead:

1. the run's own split is fold 0 (trained on ``train``, held out: ``val``); the training split is
   cut into ``folds - 1`` more stratified parts, and for each a fold run trains the same two
   phases on every other labelled image (``RUN/folds/fold-i``: checkpoints, metrics, exact resume);
2. every candidate ``theta(a) = (1 - a) probe_i + a finetuned_i`` (``final.choice.ALPHAS``) of
   every fold is scored on the images that fold held out: out-of-fold predictions for all the
   labelled images, each from a model that never saw it;
3. ``a`` is chosen on those (``choose`` over the pooled figures: n = every labelled image);
4. the final model is ``(1 - a) probe + a soup``, the soup being the uniform average of the fold
   models' fine-tuned weights (Wortsman et al. 2022: models fine-tuned from one pretrained start
   average into one better model; together the folds have seen every labelled image).

Its cost: ``folds - 1`` more fine-tunings on ``(folds - 1) / folds`` of the pool each. Its
out-of-fold logits at the chosen ``a`` also calibrate the final model (``confidence``).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

from ...data.sources import DatasetSplits, ImageSet, JoinedImages
from ..evaluation.predict import Predictions, predict
from ..evaluation.prediction_cache import PredictionCache
from ..rundir.checkpoint_io import load_checkpoint
from ..rundir.run_dir import RunDir
from .calibration import calibrated_log_loss
from .choice import ALPHAS, PROBE, Candidate, candidate_name, choose, interpolate, model_with

if TYPE_CHECKING:
    from ..training.trained_run import TrainedRun

# train.folds = "auto": cross-fit while the validation split is smaller than this. At 50-60 validation images, four
# held-out folders: +8 and +6 test images on two, 0 on two, none lower (benchmarks/TRANSFER.md); above 60, unmeasured
AUTO_MAX_VAL = 64
AUTO_FOLDS = 5
FOLDS_DIR = "folds"


def fold_count(setting: int | str, splits: DatasetSplits, distributed: bool) -> int:
    """How many folds ``train.folds`` asks for here (1: choose on the validation split alone):
    ``"auto"`` cross-fits while validation is small; never across processes, without validation,
    or with a class of fewer training images than extra folds (a fold would lack it)."""
    n_val = len(splits.val or [])
    if distributed or n_val == 0:
        return 1
    count = (AUTO_FOLDS if n_val < AUTO_MAX_VAL else 1) if setting == "auto" else int(setting)
    per_class = np.bincount(np.asarray(splits.train.targets), minlength=len(splits.classes))
    return count if count > 1 and per_class.min() >= count - 1 else 1


def extra_parts(train: ImageSet, parts: int, seed: int) -> list[list[int]]:
    """``parts`` stratified pieces of the training split (indices), seeded; classes too small to
    stratify are dealt round-robin."""
    from sklearn.model_selection import StratifiedKFold

    targets = np.asarray(train.targets)
    counts = np.bincount(targets, minlength=len(train.classes))
    if counts[counts > 0].min() >= parts:
        splitter = StratifiedKFold(n_splits=parts, shuffle=True, random_state=seed)
        return [sorted(held.tolist()) for _, held in splitter.split(np.zeros(len(targets)), targets)]
    order = np.random.default_rng(seed).permutation(len(targets))
    order = order[np.argsort(targets[order], kind="stable")]
    return [sorted(order[i::parts].tolist()) for i in range(parts)]


def soup_name(alpha: float) -> str:
    """The name of ``(1 - alpha) probe + alpha soup`` in the run's predictions: a = 0 is the probe itself."""
    return PROBE if alpha == 0.0 else "soup" if alpha == 1.0 else f"soup-wise-{alpha:g}"


@dataclass
class FoldModels:
    """One fold's two models and what it held out; ``predictions``: its trainer's (the held-out
    images are that trainer's "val")."""

    probe: dict[str, torch.Tensor]
    finetuned: dict[str, torch.Tensor]
    held: ImageSet
    predictions: PredictionCache


def _fold_splits(splits: DatasetSplits, part: list[int]) -> DatasetSplits:
    keep = sorted(set(range(len(splits.train))) - set(part))
    train = JoinedImages([splits.train.subset(keep), splits.val])
    return DatasetSplits(train, splits.train.subset(part), None, [])


def run_folds(trained: "TrainedRun", finetuned: nn.Module, count: int, log: Callable[[str], None]) -> list[FoldModels]:
    """Fold 0 is the run itself; folds 1.. train in ``RUN/folds/fold-i`` (resumed where a
    checkpoint is), each from the pretrained backbone."""
    from ..training.trainer import Trainer  # the trainer runs each fold

    prepared, splits = trained.prepared, trained.prepared.splits
    assert trained.phase1_state is not None and splits.val is not None
    folds = [FoldModels(trained.phase1_state, _cpu_state(finetuned), splits.val, trained.predictions)]
    pretrained = trained.phase1_state  # phase 1 leaves the backbone as it was; the head is refitted
    for i, part in enumerate(extra_parts(splits.train, count - 1, prepared.recipe.data.split_seed), start=1):
        fold_splits = _fold_splits(splits, part)
        model = copy.deepcopy(trained.model).cpu()
        model.load_state_dict(pretrained)
        fold_prepared = dataclasses.replace(prepared, splits=fold_splits, model=model)
        run = RunDir(trained.run.path / FOLDS_DIR / f"fold-{i}")
        run.path.mkdir(parents=True, exist_ok=True)
        checkpoint = load_checkpoint(run.last_checkpoint) if run.has_checkpoint else None
        log(f"fold {i + 1}/{count}: trains on {len(fold_splits.train)} images, holds out {len(part)}"
            + (" (resuming)" if checkpoint is not None else ""))
        fold = Trainer(fold_prepared, run, log=_indented(log), dist=trained.dist, stop=trained.stop).fit(checkpoint)
        assert fold.phase1_state is not None
        folds.append(FoldModels(fold.phase1_state, _cpu_state(fold.last), fold_splits.val, fold.predictions))
        del fold, model
    return folds


def out_of_fold_candidates(trained: "TrainedRun", template: nn.Module, folds: list[FoldModels]) -> tuple[list[Candidate], dict]:
    """Every ``a`` scored on the pooled out-of-fold predictions; also the logits per ``a``. What a
    fold's trainer already predicted on its held-out images (its last validation) is not predicted
    again, and fold 0's (the run's own candidates on its validation split) stay in the run's
    predictions for the end of the run."""
    prepared, r = trained.prepared, trained.prepared.recipe
    logits: dict[float, list[np.ndarray]] = {a: [] for a in ALPHAS}
    targets: list[np.ndarray] = []
    for i, fold in enumerate(folds):
        for a in ALPHAS:
            def held_out(fold: FoldModels = fold, a: float = a, i: int = i) -> Predictions:
                model = model_with(template, interpolate(fold.probe, fold.finetuned, a))
                preprocess = prepared.probe_preprocessing if a == 0.0 else prepared.eval_transform
                return predict(model, fold.held, preprocess, runtime=prepared.runtime,
                               batch_size=r.data.eval_batch_size or r.data.batch_size * 2, num_workers=r.data.num_workers,
                               desc=f"fold {i + 1} held out (a = {a:g})")

            out = fold.predictions.get(candidate_name(a), "val", held_out)
            logits[a].append(out.logits)
        targets.append(out.targets)
    y = np.concatenate(targets)
    pooled = {a: torch.as_tensor(np.concatenate(logits[a])) for a in ALPHAS}
    return pooled_candidates(pooled, y), {"logits": pooled, "targets": y}


def pooled_candidates(logits: dict[float, torch.Tensor], targets: np.ndarray) -> list[Candidate]:
    """One candidate per ``a`` with its accuracy and log-loss over the pooled out-of-fold logits."""
    y = torch.as_tensor(targets)
    candidates = []
    for a, z in logits.items():
        c = Candidate(candidate_name(a), a, None)
        c.val = {"top1": float((z.argmax(1) == y).float().mean()), "loss": float(torch.nn.functional.cross_entropy(z, y)),
                 "loss_calibrated": calibrated_log_loss(z.numpy(), targets), "n": int(len(y))}
        candidates.append(c)
    return candidates


def soup(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of floating tensors (counters from the first)."""
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = torch.stack([s[key].to(first) for s in states]).mean(0)
        else:
            out[key] = first.clone()
    return out


def cross_fit_final(
    trained: "TrainedRun", finetuned: nn.Module, count: int, log: Callable[[str], None]
) -> tuple[nn.Module, dict[str, Any], dict]:
    """The final model and the record of the choice (``train.final = "auto"`` with folds), and
    the out-of-fold logits for calibration."""
    folds = run_folds(trained, finetuned, count, log)
    candidates, oof = out_of_fold_candidates(trained, finetuned, folds)
    n = len(oof["targets"])
    chosen = choose(candidates, n)
    soup_state = soup([f.finetuned for f in folds])
    final_state = interpolate(folds[0].probe, soup_state, chosen.alpha)
    shown = ", ".join(f"{c.name} {c.val['top1']:.3f}/{c.val['loss']:.3f}" for c in candidates)
    log(f"  final weights: {chosen.name} of the probe and the soup of {count} fold models, chosen on {n} out-of-fold"
        f" predictions (accuracy/log-loss: {shown})")
    info = {"policy": "auto", "chosen": f"{chosen.name} (soup of {count} folds)" if chosen.alpha else "probe",
            "alpha": chosen.alpha, "folds": count, "chosen_on": f"{n} out-of-fold predictions of {count} folds",
            "candidates": {c.name: c.record() for c in candidates}}
    oof["chosen_alpha"] = chosen.alpha
    extra = {"fold_states": [f.finetuned for f in folds], "probe": folds[0].probe, "soup": soup_state}
    return model_with(finetuned, final_state), info, {**oof, **extra}


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _indented(log: Callable[[str], None]) -> Callable[[str], None]:
    return lambda message: log(f"  {message}")
