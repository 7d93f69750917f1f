"""The one evaluation path: a model's class probabilities on a labelled image set, through the
model's evaluation preprocessing, then the metrics. Training's validation and test figures,
``transferkit evaluate``, ``report``, ``sweep`` and ``check`` all come from ``predict``, so they
cannot disagree about what a model's accuracy is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ...data.decoding import bad_image_reason
from ...data.loaders import EpochBatchSampler, make_loader
from ...data.sources import ImageSet
from ...errors import DataError
from ...progress import progress
from ..final.calibration import calibrated_log_loss, expected_calibration_error, softmax
from ..runtime.device import Runtime
from ..runtime.distributed import DistContext
from ..training.feature_cache import FeatureCache
from .metrics import classification_metrics

# image -> [3, H, W], or [V, 3, H, W] for V test-time views whose probabilities are averaged
Preprocess = Callable[[np.ndarray], torch.Tensor]
# how logits [N, C] become probabilities: one class per image (rows sum to 1), or each label on its own
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softmax": lambda logits: logits.softmax(dim=-1),
    "sigmoid": torch.sigmoid,
}


@dataclass
class Predictions:
    """Class probabilities ``[N, C]`` of a model on an image set, with the true labels ``[N]``
    as indices into ``classes`` (the model's classes). ``logits``: the model's raw logits
    ``[N, C]`` (before any temperature), kept when each image had one view (no TTA);
    ``temperature``: what ``probs`` were computed with, ``softmax(logits / temperature)``
    (``activation`` "sigmoid": a multi-label model's, each label's ``sigmoid(logits / temperature)``)."""

    probs: np.ndarray
    targets: np.ndarray
    classes: list[str]
    logits: np.ndarray | None = None
    temperature: float = 1.0
    # with on_bad="skip": the rows' indices into the image set, and the images left out (name, reason)
    kept: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    activation: str = "softmax"

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self.probs) else np.zeros(0, dtype=np.int64)

    def with_temperature(self, temperature: float) -> "Predictions":
        """The same predictions at another temperature (1.0: the uncalibrated probabilities)."""
        if self.logits is None:
            raise ValueError("these predictions kept no logits (test-time views average probabilities); predict again")
        if self.activation == "softmax":
            probs = softmax(self.logits, temperature).astype(np.float32)
        else:
            probs = ACTIVATIONS[self.activation](torch.from_numpy(self.logits) / temperature).numpy().astype(np.float32)
        return Predictions(probs, self.targets, self.classes, self.logits, float(temperature), self.kept, self.skipped,
                           self.activation)

    def metrics(self, calibrated_loss: bool = False) -> dict[str, Any]:
        """Top-1 (and top-k), macro-F1, per-class accuracy, confusion matrix, mean cross-entropy
        and expected calibration error (15 bins); ``calibrated_loss``: also the log-loss at the
        best temperature (``loss_calibrated``, when the logits were kept)."""
        if self.activation != "softmax":
            raise DataError("these are a multi-label model's per-label probabilities: single-label metrics (top-1, ECE)"
                            " do not apply; measure them with engine.evaluation.multilabel_metrics")
        out = classification_metrics(self.probs, self.targets, self.classes)
        if self.skipped:
            out["skipped"] = [{"file": f, "reason": r} for f, r in self.skipped]
        if len(self.targets):
            picked = self.probs[np.arange(len(self.targets)), self.targets]
            out["loss"] = float(-np.log(np.clip(picked, 1e-12, None)).mean())
        else:
            out["loss"] = float("nan")
        out["ece"] = expected_calibration_error(self.probs, self.targets)
        if calibrated_loss and self.logits is not None:
            out["loss_calibrated"] = calibrated_log_loss(self.logits, self.targets)
        return out


def predict(
    model: nn.Module,
    images: ImageSet,
    preprocess: Preprocess | None = None,
    *,
    classes: Sequence[str] | None = None,
    runtime: Runtime | None = None,
    batch_size: int = 64,
    num_workers: int | str = 0,
    features: FeatureCache | None = None,
    dist: DistContext | None = None,
    temperature: float = 1.0,
    activation: str = "softmax",
    desc: str = "eval",
    on_bad: str = "error",
) -> Predictions:
    """Probabilities of ``model`` (in eval mode) on every image of ``images``, in order.

    ``preprocess`` turns an image into the model's input; with ``features`` (the images' cached
    backbone features, phase 1) the head alone runs on them instead. ``classes``: the model's
    class names when they may differ from the image set's (another folder of images); labels are
    mapped by name. ``batch_size`` counts forward rows: with V views per image, about
    ``batch_size / V`` images go into a batch. ``temperature``: probabilities are
    ``softmax(logits / temperature)`` (of each view, then averaged); ``activation="sigmoid"``:
    each label's ``sigmoid(logits / temperature)`` instead (a multi-label model; rows do not sum
    to 1). Across processes each rank predicts its share and every rank gets all the rows.

    An image that cannot be decoded costs only itself, not its batch: ``on_bad="error"`` raises one
    ``DataError`` naming every such image after the pass; ``"skip"`` leaves them out
    (``Predictions.kept``, ``Predictions.skipped``)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r}: choose one of {', '.join(ACTIVATIONS)}")
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
        shape = _input_shape(images, preprocess)
        per_image = int(shape[0]) if len(shape) == 4 else 1
        sampler = _sampler(len(images), max(1, batch_size // per_image), dist)
        batches = make_loader(_GuardedImages(images, preprocess, shape), sampler, num_workers, runtime.device.type == "cuda")
        forward = model
    reasons: dict[int, str] = {}
    probs, logits = _probabilities(forward, batches, runtime, desc=desc, total=len(sampler), classes=len(names),
                                   temperature=temperature, activation=activation, reasons=reasons)
    probs = dist.gather_rows(probs, len(images))
    if logits is not None:
        logits = dist.gather_rows(logits, len(images))
    bad = np.flatnonzero((probs < 0).any(axis=1)) if len(probs) else np.zeros(0, dtype=np.int64)
    if not len(bad):
        return Predictions(probs, targets, names, logits, float(temperature), activation=activation)
    skipped = [(images.describe(int(i)), reasons.get(int(i), "could not be decoded")) for i in bad]
    if on_bad != "skip":
        shown = "; ".join(f"{f}: {r}" for f, r in skipped[:10]) + ("; ..." if len(skipped) > 10 else "")
        raise DataError(f"{len(skipped)} image(s) could not be read: {shown}; fix or remove them")
    kept = np.setdiff1d(np.arange(len(probs)), bad)
    return Predictions(probs[kept], targets[kept], names, None if logits is None else logits[kept], float(temperature),
                       kept=kept, skipped=skipped, activation=activation)


class _GuardedImages(Dataset):
    """``(input, index, reason)``: an image that fails to decode or preprocess gives a filler
    input and the reason, so only its own row is lost (marked -1 by ``_probabilities``)."""

    def __init__(self, images: ImageSet, preprocess: Preprocess, shape: torch.Size) -> None:
        self.images, self.preprocess, self.shape = images, preprocess, shape

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        try:
            return self.preprocess(self.images.load(index)), index, ""
        except (DataError, OSError, SyntaxError, ValueError, MemoryError) as exc:
            return torch.zeros(self.shape), index, bad_image_reason(exc, self.images.describe(index)) or "could not be decoded"


def inference_runtime(model: nn.Module) -> Runtime:
    """Where a loaded model runs: its parameters' device, float32, channels_last (oneDNN's and
    cuDNN's convolutions are faster on NHWC; the results are the same)."""
    device = next(model.parameters()).device
    return Runtime(device, None, channels_last=True)


@torch.inference_mode()
def _probabilities(
    forward: Callable[[torch.Tensor], torch.Tensor], batches: Any, runtime: Runtime, *, desc: str, total: int, classes: int,
    temperature: float = 1.0,
    activation: str = "softmax",
    reasons: dict[int, str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities ``[N, C]`` (``ACTIVATIONS[activation]`` of the logits over the temperature,
    averaged over test-time views) and, when no batch had test-time views, the raw logits. Rows of
    images that failed (``_GuardedImages``) are -1 (no probability is); their reasons go into
    ``reasons`` by index."""
    activate = ACTIVATIONS[activation]
    out, raw, with_views = [], [], False
    for batch in progress(batches, total=total, desc=desc):
        inputs = batch[0]
        views = inputs.shape[1] if inputs.ndim == 5 else 0  # [N, V, 3, H, W]: test-time views
        rows = inputs.flatten(0, 1) if views else inputs
        with runtime.autocast():
            logits = forward(runtime.to_device(rows)).float().cpu()
        probs = activate(logits / temperature)
        probs = probs.view(-1, views, probs.shape[-1]).mean(dim=1) if views else probs
        if len(batch) == 3:  # images: (inputs, indices, reasons)
            failed = [k for k, why in enumerate(batch[2]) if why]
            for k in failed:
                if reasons is not None:
                    reasons[int(batch[1][k])] = batch[2][k]
            if failed:
                probs[failed] = -1.0
        out.append(probs)
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


def _input_shape(images: ImageSet, preprocess: Preprocess) -> torch.Size:
    """The preprocessed shape of the first image that decodes (``[V, 3, H, W]`` with test-time views)."""
    for index in range(len(images)):
        try:
            return preprocess(images.load(index)).shape
        except (DataError, OSError, SyntaxError, ValueError, MemoryError):
            continue
    return torch.Size([3, 1, 1])  # no image decodes: every row is reported as bad


def _sampler(n: int, batch_size: int, dist: DistContext) -> EpochBatchSampler:
    return EpochBatchSampler(n, batch_size, shuffle=False, rank=dist.rank, world_size=dist.world_size)
