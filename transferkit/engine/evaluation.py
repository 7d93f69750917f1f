"""The one evaluation path: a model's class probabilities on a labelled image set, through the
model's evaluation preprocessing, then the metrics. Training's validation and test figures,
``transferkit evaluate``, ``report``, ``sweep`` and ``check`` all come from ``predict``, so they
cannot disagree about what a model's accuracy is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.loaders import EpochBatchSampler, TransformedDataset, make_loader
from ..data.sources import ImageSet
from ..errors import DataError
from ..progress import progress
from .calibration import expected_calibration_error, softmax
from .distributed import DistContext
from .feature_cache import FeatureCache
from .metrics import classification_metrics
from .runtime import Runtime

# image -> [3, H, W], or [V, 3, H, W] for V test-time views whose probabilities are averaged
Preprocess = Callable[[np.ndarray], torch.Tensor]


@dataclass
class Predictions:
    """Class probabilities ``[N, C]`` of a model on an image set, with the true labels ``[N]``
    as indices into ``classes`` (the model's classes). ``logits``: the model's raw logits
    ``[N, C]`` (before any temperature), kept when each image had one view (no TTA);
    ``temperature``: what ``probs`` were computed with, ``softmax(logits / temperature)``."""

    probs: np.ndarray
    targets: np.ndarray
    classes: list[str]
    logits: np.ndarray | None = None
    temperature: float = 1.0

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self.probs) else np.zeros(0, dtype=np.int64)

    def with_temperature(self, temperature: float) -> "Predictions":
        """The same predictions at another temperature (1.0: the uncalibrated probabilities)."""
        if self.logits is None:
            raise ValueError("these predictions kept no logits (test-time views average probabilities); predict again")
        probs = softmax(self.logits, temperature).astype(np.float32)
        return Predictions(probs, self.targets, self.classes, self.logits, float(temperature))

    def metrics(self) -> dict[str, Any]:
        """Top-1 (and top-k), macro-F1, per-class accuracy, confusion matrix, mean cross-entropy
        and expected calibration error (15 bins)."""
        out = classification_metrics(self.probs, self.targets, self.classes)
        if len(self.targets):
            picked = self.probs[np.arange(len(self.targets)), self.targets]
            out["loss"] = float(-np.log(np.clip(picked, 1e-12, None)).mean())
        else:
            out["loss"] = float("nan")
        out["ece"] = expected_calibration_error(self.probs, self.targets)
        return out


def predict(
    model: nn.Module,
    images: ImageSet,
    preprocess: Preprocess | None = None,
    *,
    classes: Sequence[str] | None = None,
    runtime: Runtime | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    features: FeatureCache | None = None,
    dist: DistContext | None = None,
    temperature: float = 1.0,
    desc: str = "eval",
) -> Predictions:
    """Probabilities of ``model`` (in eval mode) on every image of ``images``, in order.

    ``preprocess`` turns an image into the model's input; with ``features`` (the images' cached
    backbone features, phase 1) the head alone runs on them instead. ``classes``: the model's
    class names when they may differ from the image set's (another folder of images); labels are
    mapped by name. ``batch_size`` counts forward rows: with V views per image, about
    ``batch_size / V`` images go into a batch. ``temperature``: probabilities are
    ``softmax(logits / temperature)`` (of each view, then averaged). Across processes each rank
    predicts its share and every rank gets all the rows."""
    runtime = runtime or inference_runtime(model)
    dist = dist or DistContext()
    names = list(classes) if classes is not None else list(images.classes)
    targets = _targets(images, names)
    model.eval()
    if features is not None:
        sampler = _sampler(len(images), batch_size, dist)
        batches: Any = features.batches(sampler)
        forward = model.forward_head
    else:
        if preprocess is None:
            raise TypeError("predict: give preprocess (the model's evaluation transform) or features")
        per_image = _views_per_image(images, preprocess)
        sampler = _sampler(len(images), max(1, batch_size // per_image), dist)
        batches = make_loader(TransformedDataset(images, preprocess), sampler, num_workers)
        forward = model
    probs, logits = _probabilities(forward, batches, runtime, desc=desc, total=len(sampler), classes=len(names),
                                   temperature=temperature)
    if logits is not None:
        logits = dist.gather_rows(logits, len(images))
    return Predictions(dist.gather_rows(probs, len(images)), targets, names, logits, float(temperature))


def inference_runtime(model: nn.Module) -> Runtime:
    """Where a loaded model runs: its parameters' device, float32, channels_last (oneDNN's and
    cuDNN's convolutions are faster on NHWC; the results are the same)."""
    device = next(model.parameters()).device
    return Runtime(device, None, channels_last=True)


@torch.inference_mode()
def _probabilities(
    forward: Callable[[torch.Tensor], torch.Tensor], batches: Any, runtime: Runtime, *, desc: str, total: int, classes: int,
    temperature: float = 1.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities ``[N, C]`` and, when no batch had test-time views, the raw logits."""
    out, raw, with_views = [], [], False
    for inputs, _ in progress(batches, total=total, desc=desc):
        views = inputs.shape[1] if inputs.ndim == 5 else 0  # [N, V, 3, H, W]: test-time views
        rows = inputs.flatten(0, 1) if views else inputs
        with runtime.autocast():
            logits = forward(runtime.to_device(rows)).float().cpu()
        probs = (logits / temperature).softmax(dim=-1)
        out.append(probs.view(-1, views, probs.shape[-1]).mean(dim=1) if views else probs)
        with_views |= bool(views)
        raw.append(logits)
    if not out:
        return np.zeros((0, classes), dtype=np.float32), np.zeros((0, classes), dtype=np.float32)
    return torch.cat(out).numpy(), None if with_views else torch.cat(raw).numpy()


def _targets(images: ImageSet, classes: list[str]) -> np.ndarray:
    targets = np.asarray(images.targets, dtype=np.int64)
    if list(images.classes) == classes:
        return targets
    missing = sorted(set(images.classes) - set(classes))
    if missing:
        raise DataError(f"--data: classes {missing} are not among the model's classes {classes}")
    remap = np.array([classes.index(c) for c in images.classes], dtype=np.int64)
    return remap[targets]


def _views_per_image(images: ImageSet, preprocess: Preprocess) -> int:
    if len(images) == 0:
        return 1
    first = preprocess(images.load(0))
    return int(first.shape[0]) if first.ndim == 4 else 1


def _sampler(n: int, batch_size: int, dist: DistContext) -> EpochBatchSampler:
    return EpochBatchSampler(n, batch_size, shuffle=False, rank=dist.rank, world_size=dist.world_size)
