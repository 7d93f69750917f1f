"""The probe and the fine-tuned model as one classifier (``train.final = "ensemble"``).

Their output-space ensemble: both networks read the same centre crop, the probe's backbone at its
own resolution (the input's), the fine-tuned one resized to the size it was trained at, and the
head averages their logits. One ``Classifier`` still, so everything that takes a run's model
(calibration, rejection, TTA, ``load``, ``predict``, ``export``) takes it unchanged:

    features = [probe_backbone(x), finetuned_backbone(resize(x))]      (TwinBackbone)
    logits   = features @ [W_probe, W_finetuned]^T / 2 + (b_probe + b_finetuned) / 2
             = (logits_probe + logits_finetuned) / 2

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

from typing import Any

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


def ensemble_classifier(probe: Classifier, finetuned: Classifier, finetuned_size: int,
                        finetuned_preprocessing: dict[str, Any] | None = None) -> Classifier:
    """One classifier whose logits are the mean of ``probe``'s (at the input's size) and
    ``finetuned``'s (at ``finetuned_size``). Both keep their own weights; neither is changed."""
    if probe.classes != finetuned.classes:
        raise ValueError("ensemble_classifier: the probe and the fine-tuned model name different classes")
    twin = TwinBackbone(probe.backbone, finetuned.backbone, finetuned_size, finetuned_preprocessing)
    model = Classifier(twin, probe.classes).to(probe.head.weight.device)
    with torch.no_grad():
        model.head.weight.copy_(torch.cat([probe.head.weight, finetuned.head.weight], dim=1) / 2)
        model.head.bias.copy_((probe.head.bias + finetuned.head.bias) / 2)
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
