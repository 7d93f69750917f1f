"""The probe and the fine-tuned model as one classifier (``train.final = "ensemble"``).

Their output-space ensemble: both networks read the same centre crop, the probe's backbone at its
own resolution (the input's), the fine-tuned one resized to the size it was trained at, and the
head averages their logits. One ``Classifier`` still, so everything that takes a run's model
(calibration, rejection, TTA, ``load``, ``predict``, ``export``) takes it unchanged:

    features = [probe_backbone(x), finetuned_backbone(resize(x))]      (TwinBackbone)
    logits   = features @ [w_p W_probe, w_f W_finetuned]^T + (w_p b_probe + w_f b_finetuned)
             = w_p logits_probe + w_f logits_finetuned

The weights put both members on one logit scale (``balanced_weights``). The probe is fitted
without label smoothing, the shipped recipe fine-tunes with 0.1, which bounds the fine-tuned
model's logits: on ten held-out folders the probe's spread 1.5-4.3x wider, so a plain mean let
the probe decide nearly alone wherever the two disagreed (benchmarks/TRANSFER.md, round 10).
Each member is divided by its own spread, measured on images it was not fitted on and without
their labels; equal spreads give (1/2, 1/2).

Averaging logits is averaging log-probabilities up to a constant per image (the normalised
geometric mean of the two models' probabilities), which keeps the ensemble one linear head. On
nine folders (eight held out, and flowers12) it got as many test images right as averaging the
probabilities on eight and three more on the ninth (benchmarks/TRANSFER.md). The resize inside
the model is antialiased bilinear, as a crop at the fine-tuned size from the same image would be
up to interpolation (both crops take ``data.crop_pct`` of the shorter side).

A manifest records it as ``backbone.ensemble = {"finetuned_size": N}`` (``rundir.model_files``);
its weights hold ``backbone.probe.*``, ``backbone.finetuned.*`` and the joint head.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classifier import Classifier
from .readout import readout_of


class TwinBackbone(nn.Module):
    """Two backbones of one architecture on one input: ``[probe(x), finetuned(resize(x))]``."""

    def __init__(self, probe: nn.Module, finetuned: nn.Module, finetuned_size: int,
                 finetuned_preprocessing: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.probe, self.finetuned = probe, finetuned
        self.finetuned_size = int(finetuned_size)
        # the fine-tuned network's own evaluation preprocessing (a manifest entry): what one network of the run
        # (a kept checkpoint, an average of them) is evaluated at (rundir.model_files.single_network)
        self.finetuned_preprocessing = finetuned_preprocessing
        self.num_features = int(probe.num_features) + int(finetuned.num_features)
        self.readout = readout_of(probe)
        self.weights_origin = getattr(probe, "weights_origin", "none")
        config = getattr(probe, "data_config", None)
        if config is not None:
            self.data_config = dict(config)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.finetuned_size
        small = images if tuple(images.shape[-2:]) == (size, size) else F.interpolate(
            images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return torch.cat([self.probe(images), self.finetuned(small)], dim=1)


def logit_spread(logits: np.ndarray) -> float:
    """How widely a model's logits spread: the mean over images of their standard deviation
    across classes (unchanged by the constant that turns logits into log-probabilities)."""
    logits = np.asarray(logits, dtype=np.float64)
    return float(logits.std(axis=1).mean()) if logits.ndim == 2 and len(logits) else 0.0


def balanced_weights(probe_logits: np.ndarray, finetuned_logits: np.ndarray) -> tuple[float, float]:
    """The weights ``(w_probe, w_finetuned)`` that put the two members' logits, on the same
    images, on one scale: ``w_m = s / (2 s_m)``, with ``s_m`` a member's ``logit_spread`` and
    ``s`` their geometric mean (so the ensemble's own spread stays that of the two). Equal
    spreads, or one that cannot be measured, give ``(0.5, 0.5)``: the plain mean."""
    s_p, s_f = logit_spread(probe_logits), logit_spread(finetuned_logits)
    if not (np.isfinite(s_p) and np.isfinite(s_f)) or min(s_p, s_f) <= 1e-8:
        return 0.5, 0.5
    s = math.sqrt(s_p * s_f)
    return s / (2 * s_p), s / (2 * s_f)


def ensemble_classifier(probe: Classifier, finetuned: Classifier, finetuned_size: int,
                        finetuned_preprocessing: dict[str, Any] | None = None,
                        weights: tuple[float, float] = (0.5, 0.5)) -> Classifier:
    """One classifier whose logits are ``w_p`` x ``probe``'s (at the input's size) plus ``w_f`` x
    ``finetuned``'s (at ``finetuned_size``); ``weights = (w_p, w_f)``, the plain mean by default
    (``balanced_weights`` measures them). Both keep their own weights; neither is changed."""
    if probe.classes != finetuned.classes:
        raise ValueError("ensemble_classifier: the probe and the fine-tuned model name different classes")
    w_p, w_f = (float(w) for w in weights)
    if not (w_p >= 0 and w_f >= 0 and w_p + w_f > 0):
        raise ValueError(f"ensemble_classifier: weights {weights} must be >= 0, not both 0")
    twin = TwinBackbone(probe.backbone, finetuned.backbone, finetuned_size, finetuned_preprocessing)
    model = Classifier(twin, probe.classes).to(probe.head.weight.device)
    with torch.no_grad():
        model.head.weight.copy_(torch.cat([w_p * probe.head.weight, w_f * finetuned.head.weight], dim=1))
        model.head.bias.copy_(w_p * probe.head.bias + w_f * finetuned.head.bias)
    model.data_config.update(probe.data_config)
    return model.eval()


def ensemble_spec(backbone: nn.Module) -> dict[str, Any]:
    """What a manifest's ``backbone`` entry adds for an ensemble (nothing for one network)."""
    if not isinstance(backbone, TwinBackbone):
        return {}
    spec: dict[str, Any] = {"finetuned_size": backbone.finetuned_size}
    if backbone.finetuned_preprocessing is not None:
        spec["preprocessing"] = dict(backbone.finetuned_preprocessing)
    return {"ensemble": spec}


def twin_from_spec(build: Any, spec: dict[str, Any]) -> nn.Module:
    """A manifest's backbone: ``build()`` once, or twice under a ``TwinBackbone`` for an ensemble."""
    ensemble = spec.get("ensemble")
    if ensemble is None:
        return build()
    return TwinBackbone(build(), build(), int(ensemble["finetuned_size"]), ensemble.get("preprocessing"))


def holds_ensemble(state: dict[str, Any]) -> bool:
    """Whether a classifier's state dict is an ensemble's (both networks) rather than one network's."""
    return any(k.startswith("backbone.probe.") for k in state) and any(k.startswith("backbone.finetuned.") for k in state)
