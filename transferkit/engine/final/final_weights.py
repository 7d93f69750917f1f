"""The weights a run ends with (``train.final``), from what the phases left (``TrainedRun``): the
probe + fine-tuned ensemble (the default), the last weights, the best epoch's, or the choice
among the probe, the fine-tuned model and their interpolations (``choice``), made on validation
or on out-of-fold predictions of every labelled image (``cross_fit``). The summary's ``final``
records the choice, and its test figures become the chosen weights'. Collective across
processes: every rank evaluates the same candidates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from torch import nn

from ...models.ensemble import balanced_weights, ensemble_classifier, logit_spread
from ..rundir.checkpoint_io import load_checkpoint
from ..training.trained_run import TrainedRun, predict_images
from .choice import ENSEMBLE, FINETUNED, PROBE, Candidate, interpolate, model_with, select_final
from .cross_fit import cross_fit_final, fold_count, soup_name

SPREAD_IMAGES = 256  # training images the ensemble's weights are measured on when there is no validation split


@dataclass
class FinalWeights:
    """The chosen model; its name in the run's predictions (None: none to share them under); and
    the out-of-fold logits and labels the choice was made on (cross-fitting), which calibration
    then fits on instead of the validation split."""

    model: nn.Module
    name: str | None
    evidence: tuple[np.ndarray, np.ndarray] | None = None


def choose_final_weights(trained: TrainedRun, log: Callable[[str], None]) -> FinalWeights:
    final = _choose(trained, log)
    if trained.summary.test is None and trained.prepared.splits.val is not None:  # no test split: the figures are on val
        trained.summary.val = trained.predictions_of(final.name, "val", lambda: final.model, "val").metrics()
    return final


def _choose(trained: TrainedRun, log: Callable[[str], None]) -> FinalWeights:
    prepared, summary = trained.prepared, trained.summary
    recipe, splits = prepared.recipe, prepared.splits
    last = trained.last
    if recipe.phases.finetune.epochs == 0 or recipe.train.final == "last":
        summary.final = {"policy": recipe.train.final, "chosen": "last"}
        if recipe.phases.finetune.epochs > 0:
            return FinalWeights(last, FINETUNED)
        if recipe.phases.extract.epochs == 0:
            return FinalWeights(last, None)
        prepared.eval_transform = prepared.probe_preprocessing  # the phase-1 model is the final one
        # an averaged phase 1 is not the probe's weights
        return FinalWeights(last, PROBE if trained.averaged is None else None)

    if recipe.train.final == ENSEMBLE and trained.phase1_state is not None:
        return _ensemble(trained, last, log)
    evidence = None
    folds = fold_count(recipe.train.folds, splits, trained.dist.enabled)
    if recipe.train.final == "auto" and folds > 1 and trained.phase1_state is not None:
        chosen, info, out_of_fold = cross_fit_final(trained, last, folds, log)
        name = soup_name(info["alpha"])
        evidence = (out_of_fold["logits"][out_of_fold["chosen_alpha"]].numpy(), out_of_fold["targets"])
        if recipe.train.test_candidates and splits.test is not None:
            info["test_models"] = _test_fold_models(trained, last, out_of_fold)
    else:
        chosen, info = select_final(
            recipe.train.final, last, trained.phase1_state, _best_state(trained), _evaluator(trained, last),
            n_val=len(splits.val or []), measure_test=recipe.train.test_candidates, log=log,
        )
        name = FINETUNED if info["chosen"] in ("last", FINETUNED) else info["chosen"]
    summary.final = info
    if info.get("alpha") == 0.0:  # the probe: it is evaluated, calibrated and exported at its own preprocessing
        prepared.eval_transform = prepared.probe_preprocessing
    trained.predictions.keep_only([name])  # the candidates not chosen are done with
    if chosen is not last:
        _final_test(trained, chosen, name, info["chosen"], log)
    return FinalWeights(chosen, name, evidence)


def _final_test(trained: TrainedRun, model: nn.Module, name: str, shown: str, log: Callable[[str], None]) -> None:
    """The final weights' test figures in the summary (the fine-tuned model's kept beside them)."""
    summary = trained.summary
    if trained.prepared.splits.test is None:
        return
    summary.test_finetuned = summary.test
    summary.test = trained.predictions_of(name, "test", lambda: model, "test (final)").metrics()
    if trained.dist.is_main:
        record = {k: v for k, v in summary.test.items() if k != "confusion_matrix"}
        trained.run.append_metrics({"kind": "test", "phase": "final", "weights": shown, **record})
    log(f"  final test accuracy ({shown}): {summary.test['top1']:.4f}")


def _ensemble(trained: TrainedRun, finetuned: nn.Module, log: Callable[[str], None]) -> FinalWeights:
    """``train.final = "ensemble"``: the probe and the fine-tuned model as one classifier, their
    logits averaged (``models.ensemble``); nothing is chosen. It reads the probe's preprocessing
    and resizes for the fine-tuned network inside. The summary keeps each member's and the
    ensemble's validation figures."""
    prepared = trained.prepared
    size = prepared.eval_transform.image_size
    probe = model_with(finetuned, trained.phase1_state)
    has_val = prepared.splits.val is not None
    val = {n: _val_figures(trained, n, m) for n, m in ((PROBE, probe), (FINETUNED, finetuned))} if has_val else {}
    weights, spread = _member_weights(trained, probe, finetuned, has_val)
    model = ensemble_classifier(probe, finetuned, size, prepared.eval_transform.to_manifest(), weights)
    info: dict[str, Any] = {"policy": ENSEMBLE, "chosen": ENSEMBLE, "members": [PROBE, FINETUNED],
                            "sizes": {PROBE: prepared.probe_preprocessing.image_size, FINETUNED: size},
                            "weights": {PROBE: round(weights[0], 6), FINETUNED: round(weights[1], 6)}, "weighted_on": spread}
    log(f"  ensemble weights: probe {weights[0]:.3f}, fine-tuned {weights[1]:.3f} (logits on one scale, "
        f"measured on {spread['images']} {spread['split']} images)")
    prepared.eval_transform = prepared.probe_preprocessing  # what the ensemble reads, evaluated, calibrated and exported at
    if has_val:
        val[ENSEMBLE] = _val_figures(trained, ENSEMBLE, model)
        info["candidates"] = {n: Candidate(n, None, None, val=v).record() for n, v in val.items()}
        shown = ", ".join(f"{n} {v['top1']:.3f}/{v['loss']:.3f}" for n, v in val.items())
        log(f"  final weights: the probe + fine-tuned ensemble (validation accuracy/log-loss: {shown})")
    trained.summary.final = info
    trained.predictions.keep_only([ENSEMBLE])
    _final_test(trained, model, ENSEMBLE, ENSEMBLE, log)
    return FinalWeights(model, ENSEMBLE)


def _member_weights(trained: TrainedRun, probe: nn.Module, finetuned: nn.Module,
                    val: bool) -> tuple[tuple[float, float], dict[str, Any]]:
    """The ensemble's member weights (``models.ensemble.balanced_weights``), from the members' logits
    on the validation images, or without a validation split on up to ``SPREAD_IMAGES`` training
    images spread over the split; labels are not used."""
    splits = trained.prepared.splits
    members = ((PROBE, probe), (FINETUNED, finetuned))
    if val:  # predicted once already, for the figures
        logits = [trained.predictions_of(name, "val", lambda m=m: m, f"val ({name})").logits for name, m in members]
        split, n = "validation", len(splits.val)
    else:
        rows = np.unique(np.linspace(0, len(splits.train) - 1, min(len(splits.train), SPREAD_IMAGES)).astype(int))
        images = splits.train.subset(rows.tolist())
        logits = [predict_images(trained.prepared, m, images, f"train ({name}, ensemble weights)", dist=trained.dist,
                                 probe=name == PROBE).logits for name, m in members]
        split, n = "training", len(rows)
    if any(z is None for z in logits):
        return (0.5, 0.5), {"split": split, "images": 0}
    spreads = [logit_spread(z) for z in logits]
    return balanced_weights(*logits), {"split": split, "images": n, "spread": {PROBE: round(spreads[0], 6),
                                                                              FINETUNED: round(spreads[1], 6)}}


def _val_figures(trained: TrainedRun, name: str, model: nn.Module) -> dict[str, Any]:
    return trained.predictions_of(name, "val", lambda: model, f"val ({name})").metrics(calibrated_loss=True)


def _best_state(trained: TrainedRun) -> dict[str, Any] | None:
    """``train.final = "best"``: the best epoch's weights, as rank 0 wrote them."""
    if trained.prepared.recipe.train.final != "best":
        return None
    trained.dist.barrier()  # rank 0 wrote best.pt
    return load_checkpoint(trained.run.best_checkpoint)["model"] if trained.run.best_checkpoint.is_file() else None


def _evaluator(trained: TrainedRun, template: nn.Module) -> Callable[[Candidate, str], dict[str, Any] | None]:
    """A candidate's figures on a split (None: the run has no such split), each predicted once."""
    def evaluate(candidate: Candidate, split: str) -> dict[str, Any] | None:
        if getattr(trained.prepared.splits, split) is None:
            return None
        predictions = trained.predictions_of(candidate.name, split, lambda: model_with(template, candidate.state),
                                             f"{split} (final candidates)")
        return predictions.metrics(calibrated_loss=True)

    return evaluate


def _test_fold_models(trained: TrainedRun, template: nn.Module, oof: dict[str, Any]) -> dict[str, float]:
    """``train.test_candidates`` under cross-fitting: each fold model's test accuracy, the soup's
    and the probe's, beside the chosen model's (what the soup buys, measured)."""
    models = [(PROBE, PROBE, oof["probe"]), ("soup", soup_name(1.0), oof["soup"])]
    models += [(f"fold-{i}", FINETUNED if i == 0 else None, s) for i, s in enumerate(oof["fold_states"])]  # fold 0: the run's own
    models += [(f"soup-wise-{a:g}", soup_name(a), interpolate(oof["probe"], oof["soup"], a)) for a in (0.5, 0.75)]
    scores = {}
    for name, weights, state in models:
        predictions = trained.predictions_of(weights, "test", lambda state=state: model_with(template, state), f"test ({name})")
        scores[name] = predictions.metrics()["top1"]
    return scores
