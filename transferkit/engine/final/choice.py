"""Which weights a run ends with (``train.final``).

- ``"ensemble"`` (the default): no choice; the probe and the fine-tuned model as one classifier,
  their logits weighted onto one scale and averaged (``models/ensemble.py``, applied in ``final_weights``).
- ``"last"``: the last epoch's weights (the averager's, when the recipe averages).
- ``"best"``: the best validation epoch of either phase (``checkpoints/best.pt``).
- ``"auto"``: WiSE-FT (Wortsman et al. 2022). The phase-1 model (the converged probe on the
  pretrained backbone) and the fine-tuned model are interpolated in weight space,
  ``theta(a) = (1 - a) theta_probe + a theta_finetuned``, for ``a`` in ``ALPHAS``; the probe is
  ``a = 0``, the fine-tuned model ``a = 1``. Each is scored on the validation split and
  ``choose`` picks one (see there). The probe being a candidate, the run never ends below it
  on validation.

With a few hundred training images the validation split holds a few dozen: one image is several
points. ``choose`` therefore ranks by accuracy first, breaks ties (within two binomial standard
errors) by the validation log-loss, a continuous score that a single image does not flip, and prefers the
smaller ``a`` (the model closer to the probe) when both tie. The log-loss is taken at each
candidate's best temperature: the fine-tuned model learns with label smoothing (under-confident by
design), the probe without, and raw log-losses would compare their scales, not their answers.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
PROBE, FINETUNED = "probe", "finetuned"  # the two ends' names (a = 0, a = 1)
ENSEMBLE = "ensemble"  # train.final = "ensemble": both, their logits on one scale and averaged (models/ensemble.py)
StateDict = Mapping[str, torch.Tensor]


def candidate_name(alpha: float) -> str:
    """``"probe"``, ``"finetuned"`` or ``"wise-<a>"``: a candidate's name in the summary and in the
    run's predictions (``prediction_cache``)."""
    return {0.0: PROBE, 1.0: FINETUNED}.get(alpha, f"wise-{alpha:g}")


def interpolate(start: StateDict, end: StateDict, alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * start + alpha * end`` for floating tensors; other tensors (counters) from
    ``end``. At 0 and 1 exactly ``start`` and ``end``."""
    out = {}
    for key, b in end.items():
        a = start[key]
        if not b.is_floating_point() or alpha == 1.0:
            out[key] = b.detach().clone()
        elif alpha == 0.0:
            out[key] = a.detach().to(b).clone()
        else:
            out[key] = torch.lerp(a.detach().to(b), b.detach(), alpha)
    return out


@dataclass
class Candidate:
    """One possible final model and its validation (and optionally test) figures."""

    name: str
    alpha: float | None
    state: dict[str, torch.Tensor] | None  # None: the live fine-tuned model itself
    val: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alpha": self.alpha}
        for split, metrics in (("val", self.val), ("test", self.test)):
            if metrics:
                out[f"{split}_top1"], out[f"{split}_loss"] = metrics["top1"], metrics["loss"]
                if metrics.get("loss_calibrated") is not None:
                    out[f"{split}_loss_calibrated"] = metrics["loss_calibrated"]
        return out


def wise_candidates(probe: StateDict, finetuned: StateDict, alphas: tuple[float, ...] = ALPHAS) -> list[Candidate]:
    return [Candidate(candidate_name(a), a, None if a == 1.0 else interpolate(probe, finetuned, a)) for a in alphas]


def choose(candidates: list[Candidate], n_val: int) -> Candidate:
    """Validation accuracy first, but not its noise: on a few dozen or hundred images one image is
    a point or more, so every candidate within two binomial standard errors of the best accuracy
    (about its 95% interval; never under half an image: where the standard error is 0, at an accuracy
    of 1.0, the candidates with as many right answers tie) counts as tied with it, and the lowest validation
    log-loss (a proper score, far less noisy than a count of right answers; at each candidate's best
    temperature where measured) wins among them; then
    the smallest alpha (closest to the probe). A candidate below the probe's validation accuracy
    (``candidates[0]``) is never chosen."""
    n = max(n_val, 1)
    best_acc = max(c.val["top1"] for c in candidates)
    tolerance = max(2.0 * math.sqrt(best_acc * (1.0 - best_acc) / n), 0.5 / n)
    floor = candidates[0].val["top1"]
    near = [c for c in candidates if c.val["top1"] >= max(best_acc - tolerance, floor)]
    return min(near, key=lambda c: (round(_tie_loss(c), 6), c.alpha if c.alpha is not None else 1.0))


def _tie_loss(candidate: Candidate) -> float:
    """The log-loss that breaks ties: at each candidate's best temperature when measured (models
    trained with and without label smoothing compared on how well they rank, not on their scale)."""
    calibrated = candidate.val.get("loss_calibrated")
    return calibrated if calibrated is not None and math.isfinite(calibrated) else candidate.val["loss"]


def model_with(model: nn.Module, state: StateDict | None) -> nn.Module:
    """``model`` itself (``state`` None), or a copy of it holding ``state``."""
    if state is None:
        return model
    other = copy.deepcopy(model)
    other.load_state_dict(state)
    return other.eval()


def select_final(
    policy: str,
    finetuned: nn.Module,
    probe_state: StateDict | None,
    best_state: StateDict | None,
    evaluate: Callable[[Candidate, str], dict[str, Any] | None],
    *,
    n_val: int,
    measure_test: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, dict[str, Any]]:
    """The final model under ``policy`` and a summary of the choice. ``evaluate(candidate, split)``
    gives the metrics of ``model_with(finetuned, candidate.state)`` on a split ("val" / "test"), or
    None when the run has no such split (the probe, ``alpha`` 0, is evaluated at its own preprocessing)."""
    if policy == "last":
        return finetuned, {"policy": policy, "chosen": "last"}
    if policy == "best":
        if best_state is None:
            return finetuned, {"policy": policy, "chosen": "last", "why": "no best checkpoint"}
        return model_with(finetuned, best_state), {"policy": policy, "chosen": "best"}
    if probe_state is None:
        return finetuned, {"policy": policy, "chosen": "finetuned", "why": "no phase-1 model (phase extract did not run)"}
    candidates = wise_candidates(probe_state, finetuned.state_dict())
    for c in candidates:
        c.val = evaluate(c, "val") or {}
    if not all(c.val for c in candidates):
        return finetuned, {"policy": policy, "chosen": "finetuned", "why": "no validation split to choose on"}
    chosen = choose(candidates, n_val)
    if measure_test:
        for c in candidates:
            c.test = evaluate(c, "test") or {}
    shown = ", ".join(f"{c.name} {c.val['top1']:.3f}/{c.val['loss']:.3f}" for c in candidates)
    log(f"  final weights: {chosen.name} (validation accuracy/log-loss: {shown})")
    info = {"policy": policy, "chosen": chosen.name, "alpha": chosen.alpha, "chosen_on": f"{n_val} validation images",
            "candidates": {c.name: c.record() for c in candidates}}
    return model_with(finetuned, chosen.state), info
