"""A multi-label run's final weights and thresholds.

``train.final = "auto"``: the phase-1 probe, the fine-tuned model and their weight-space
interpolations (WiSE-FT, ``final.choice.ALPHAS``) are scored on validation by macro mean average
precision, which needs no threshold. Candidates within ``TIE`` of the best count as tied, and the
one closest to the probe (the smallest alpha) wins among them: on a few dozen validation images a
hundredth of mAP is noise, and the probe is the candidate that over-fits the least. ``"last"``: the
fine-tuned weights. The probe is evaluated at its own preprocessing, the others at the fine-tuned
model's.

Then each label's threshold is chosen on the chosen weights' validation probabilities
(``multilabel.threshold``: best F1, or a precision target; ``evaluation.multilabel_metrics``).
Without a validation split every label keeps 0.5, and the run says so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ...data.multilabel_csv import MultiLabelData
from ...models.classifier import Classifier
from ..evaluation.multilabel_metrics import ThresholdChoice, choose_thresholds, mean_average_precision
from ..final.choice import ALPHAS, candidate_name, interpolate, model_with
from ..prepare import Prepared
from ..training.feature_cache import FeatureCache
from .phases import Known, probabilities

TIE = 0.01  # of macro mAP: candidates this close to the best are tied (the smallest alpha wins)
DEFAULT_THRESHOLD = 0.5


@dataclass
class MultiLabelFinal:
    model: Classifier
    alpha: float | None  # 0.0: the probe (its preprocessing applies)
    info: dict[str, Any]  # summary["final"]
    val_probs: np.ndarray | None  # the chosen weights' on validation (thresholds are fitted on them)


def choose_weights(
    prepared: Prepared, data: MultiLabelData, finetuned: Classifier, probe_state: dict[str, torch.Tensor] | None,
    val_cache: FeatureCache | None, log: Callable[[str], None], known: Known | None = None,
) -> MultiLabelFinal:
    """The final weights under ``train.final`` (see the module's docstring); ``known``: candidates'
    validation probabilities the run already has (not predicted again)."""
    known = known if known is not None else {}
    r, val = prepared.recipe, prepared.splits.val
    if r.phases.finetune.epochs == 0:  # the probe is the model
        probs = probabilities(prepared, finetuned, val, "val", probe=True, cached=val_cache) if val is not None else None
        return MultiLabelFinal(finetuned, 0.0, {"policy": r.train.final, "chosen": "probe", "alpha": 0.0}, probs)
    if r.train.final == "last" or probe_state is None or val is None:
        why = {probe_state is None: "no phase-1 model", val is None: "no validation split to choose on"}.get(True)
        probs = None if val is None else known.get(("finetuned", "val"))
        if val is not None and probs is None:
            probs = probabilities(prepared, finetuned, val, "val")
        info = {"policy": r.train.final, "chosen": "finetuned", "alpha": 1.0, **({"why": why} if why else {})}
        return MultiLabelFinal(finetuned, 1.0, info, probs)
    targets = data.targets(val.targets)
    scored = []
    for alpha in ALPHAS:
        model = model_with(finetuned, None if alpha == 1.0 else interpolate(probe_state, finetuned.state_dict(), alpha))
        name = candidate_name(alpha)
        probs = known.get((name, "val"))
        if probs is None:
            probs = probabilities(prepared, model, val, f"val ({name})", probe=alpha == 0.0, cached=val_cache if alpha == 0.0 else None)
        scored.append((alpha, name, model, probs, float(mean_average_precision(probs, targets)["macro"])))
    best = max(score for *_, score in scored)
    alpha, name, model, probs, score = next(s for s in scored if s[4] >= best - TIE)  # in order of alpha
    shown = ", ".join(f"{n} {s:.4f}" for _, n, _, _, s in scored)
    log(f"  final weights: {name} (validation macro mAP: {shown}; within {TIE} of the best, the closest to the probe)")
    info = {"policy": r.train.final, "chosen": name, "alpha": alpha, "chosen_on": f"{len(val)} validation images",
            "metric": "macro mAP", "candidates": {n: {"alpha": a, "val_macro_map": s} for a, n, _, _, s in scored}}
    return MultiLabelFinal(model, alpha, info, probs)


def fit_thresholds(prepared: Prepared, data: MultiLabelData, final: MultiLabelFinal, log: Callable[[str], None]) -> dict[str, Any]:
    """Each label's threshold on the chosen weights' validation probabilities; the manifest's
    ``thresholds`` entry (``rule``, ``values`` in label order, what validation showed)."""
    config = prepared.recipe.multilabel
    rule = config.threshold if config is not None else "f1"
    labels = data.labels
    if final.val_probs is None:
        log(f"  thresholds: no validation split; every label keeps {DEFAULT_THRESHOLD}")
        return {"rule": "default", "values": [DEFAULT_THRESHOLD] * len(labels)}
    choice: ThresholdChoice = choose_thresholds(final.val_probs, data.targets(prepared.splits.val.targets), rule, DEFAULT_THRESHOLD)
    note = choice.message(labels)
    log(f"  thresholds: each label's {choice.rule} on {len(final.val_probs)} validation images" + (f"; {note}" if note else ""))

    def plain(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else round(float(v), 4) for v in values]

    return {"rule": choice.rule, "values": [float(v) for v in choice.thresholds], "val_precision": plain(choice.precision),
            "val_recall": plain(choice.recall), "unmet": [labels[j] for j in choice.unmet],
            "without_positives": [labels[j] for j in choice.without_positives]}
