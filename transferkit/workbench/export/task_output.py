"""What an exported graph returns, by the run's task (``manifest_task``), and what its JSON says
about it.

- Single-label: the classifier itself, output ``logits`` ``[N, classes]``; the consumer applies
  ``softmax(logits / temperature)`` (the run's calibration) and, if it likes, the rejection rule.
- Multi-label (issue 26): the classifier followed by a sigmoid, output ``probabilities``
  ``[N, labels]``: each label's probability, ready to compare with the run's per-label thresholds
  (recorded beside it), so no consumer can apply a softmax by habit. The JSON records
  ``"task": "multilabel"``, the thresholds and ``output.activation: "sigmoid"`` (applied in the graph).

The verification runs the very module that was exported through PyTorch, so it compares logits
with logits, or sigmoid probabilities with sigmoid probabilities, never one with the other; it
also counts how often the export's answer is the same as PyTorch's (the top class, or the whole
label set at the thresholds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ...engine.evaluation.multilabel_metrics import predictions
from ...engine.final.calibration import manifest_temperature
from ...engine.rundir.manifest_task import MULTILABEL, task_of, threshold_rule, thresholds_of


class SigmoidOutputs(nn.Module):
    """``sigmoid(model(images))``: a multi-label classifier's per-label probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(images))


@dataclass
class TaskOutput:
    """The module to export (and to verify against), its output's name, and in words what the
    verification's difference is a difference of."""

    module: nn.Module
    name: str
    compared: str
    agreement: str  # the verification's key for the share of images with the same answer


def task_output(model: nn.Module, manifest: dict[str, Any]) -> TaskOutput:
    """The classifier as exported for its run's task (in eval mode, as ``model`` is)."""
    if task_of(manifest) == MULTILABEL:
        return TaskOutput(SigmoidOutputs(model).eval(), "probabilities", "sigmoid probability", "label_set_agreement")
    return TaskOutput(model, "logits", "logit", "top1_agreement")


def agreeing(got: np.ndarray, expected: np.ndarray, manifest: dict[str, Any]) -> int:
    """How many rows give the same answer: the same top class, or (multi-label) the same label
    set at the run's thresholds."""
    if task_of(manifest) == MULTILABEL:
        thresholds = thresholds_of(manifest)
        return int((predictions(got, thresholds) == predictions(expected, thresholds)).all(axis=1).sum())
    return int((got.argmax(1) == expected.argmax(1)).sum())


def output_entries(manifest: dict[str, Any], batch: int | str) -> dict[str, Any]:
    """The JSON's ``output`` and what a consumer needs to turn it into answers: for a single-label
    run its calibration (and rejection rule); for a multi-label one its task and thresholds."""
    classes = list(manifest["classes"])
    if task_of(manifest) == MULTILABEL:
        return {
            "task": MULTILABEL,
            "output": {
                "name": "probabilities", "shape": [batch, len(classes)], "dtype": "float32", "activation": "sigmoid",
                "meaning": "each label's probability, sigmoid(logit), computed in the graph (not a softmax: a row need not"
                           " sum to 1); column i is classes[i], predicted where it is >= thresholds.values[i]",
            },
            "thresholds": {"rule": threshold_rule(manifest), "values": thresholds_of(manifest).tolist()},
        }
    return {
        "output": {
            "name": "logits", "shape": [batch, len(classes)], "dtype": "float32",
            "meaning": "logits (unnormalised class scores); softmax(logits / calibration.temperature) over the last axis gives"
                       " the calibrated probabilities (plain softmax: uncalibrated); column i is classes[i]",
        },
        "calibration": {"temperature": manifest_temperature(manifest), "probabilities": "softmax(logits / temperature)",
                        "fitted": "calibration" in manifest},
        **({"rejection": manifest["rejection"]} if manifest.get("rejection") else {}),
    }
