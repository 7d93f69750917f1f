"""Using trained runs: ``load(run_dir)`` gives a model that predicts class names from images;
``load_ensemble(run_dirs)`` averages several; ``tta=NAME`` averages over test-time views.

Probabilities are calibrated: ``softmax(logits / T)`` with the temperature the run fitted on its
validation split (1.0 for runs written before; ``raw=True`` for the uncalibrated ones), and
``predict(..., reject=RATE)`` answers "unknown" (with the closest class) where the calibrated top
probability is below the run's threshold for that false-rejection rate on validation images.

A multi-label run (``"task": "multilabel"`` in its manifest) scores each label on its own:
``predict_proba`` gives ``sigmoid(logits)`` and ``predict`` the labels that reach their thresholds
(``label_sets.LabelSetPrediction``); no temperature, no rejection."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from .components import create_tta
from .data.decoding import decode_file
from .data.preprocessing import preprocessing_from_manifest
from .data.sources import IMAGE_EXTENSIONS, ImageSet, image_files_in, to_rgb_array
from .engine.evaluation.predict import Predictions, inference_runtime, predict
from .engine.final.calibration import manifest_temperature
from .engine.final.rejection import RejectionRule, max_probability
from .engine.rundir.manifest_task import ACTIVATIONS, MULTILABEL, task_of, thresholds_of
from .engine.rundir.model_files import classifier_of, for_weights, load_classifier
from .errors import DataError, UsageError
from .label_sets import LabelSetPrediction, label_sets, mean_thresholds, refuse_reject
from .models.classifier import Classifier

BATCH_SIZE = 64
UNKNOWN = "unknown"


@dataclass
class Prediction:
    """One image's answer: ``label`` is the most likely class, or ``"unknown"`` when the image was
    rejected (``rejected``); ``closest`` is the most likely class either way and ``probability``
    its probability; ``top_k`` the k most likely classes with theirs."""

    label: str
    probability: float
    top_k: list[tuple[str, float]]
    closest: str = ""
    rejected: bool = False


class _Predictor:
    """Shared by one model and an ensemble: ``predict_proba`` and ``predict`` from ``predictions``."""

    classes: list[str]
    task: str = "single"  # or "multilabel" (manifest_task)
    thresholds: np.ndarray | None = None  # a multi-label model's, one per label in ``classes`` order

    @property
    def decode_side(self) -> int:
        """The shorter side an image file is shrunk to right after decoding (the largest any
        member's preprocessing starts from), so no full-resolution image outlives its decoding."""
        raise NotImplementedError

    def predictions(
        self, images: ImageSet, tta: str | None = None, batch_size: int = BATCH_SIZE, *, raw: bool = False, on_bad: str = "error"
    ) -> Predictions:
        """Class probabilities on a labelled image set, with its labels mapped to this model's
        classes (what ``transferkit.evaluate``, ``report`` and ``sweep`` measure); calibrated
        unless ``raw``. An image that cannot be read: ``on_bad="error"`` raises naming it,
        ``"skip"`` leaves it out (``Predictions.kept`` / ``skipped``)."""
        raise NotImplementedError

    def rejection_threshold(self, reject: float | str) -> float:
        """The score threshold of ``reject``: a false-rejection rate, or "auto" (the run's own)."""
        raise DataError("--reject: an ensemble has no validation threshold of its own; give one run")

    def predict_proba(self, images: Any, tta: str | None = None, batch_size: int = BATCH_SIZE, *, raw: bool = False) -> np.ndarray:
        """Class probabilities ``[N, C]`` for images (see ``input_images``: one image, a list, a
        folder, a batch ``[N, H, W, C]`` or ``[N, C, H, W]``, or an ``ImageSet``); with ``tta``,
        the mean over that policy's views of each image; calibrated (the run's temperature) unless
        ``raw``. A multi-label model: each label's ``sigmoid(logit)`` (rows need not sum to 1;
        ``raw`` changes nothing)."""
        return self.predictions(input_images(images, self.classes, self.decode_side), tta=tta, batch_size=batch_size, raw=raw).probs

    def predict(
        self, images: Any, top_k: int = 1, tta: str | None = None, *, raw: bool = False, reject: float | str | None = None
    ) -> list[Prediction] | list[LabelSetPrediction]:
        """The most likely class of each image, with its probability and the top-k (``top_k`` of
        at least 1; more than the number of classes gives them all). ``reject``: a false-rejection
        rate (e.g. 0.05) or "auto" (the run's default threshold): an image whose calibrated top
        probability is below the threshold is labelled "unknown"; ``closest`` and ``probability``
        still name its most likely class.

        A multi-label model answers a ``LabelSetPrediction`` per image: the labels whose sigmoid
        probability reaches their threshold, most probable first, and the ``top_k`` most probable
        labels whatever their thresholds; ``reject`` is refused (the thresholds stand in for it)."""
        if not isinstance(top_k, int) or top_k < 1:
            raise UsageError(f"top_k {top_k!r}: give 1 or more (the number of most likely classes listed)")
        if self.task == MULTILABEL:
            if reject is not None:
                raise refuse_reject(self.describe())
            probs = self.predictions(input_images(images, self.classes, self.decode_side), tta=tta).probs
            assert self.thresholds is not None
            return label_sets(probs, self.classes, self.thresholds, top_k)
        threshold = None
        if reject is not None:
            if tta:
                raise DataError("--reject with --tta: the threshold was fitted on single views; leave out --tta")
            threshold = self.rejection_threshold(reject)
        predicted = self.predictions(input_images(images, self.classes, self.decode_side), tta=tta, raw=raw and threshold is None)
        scores = max_probability(predicted.probs)  # calibrated whenever a threshold applies
        probs = predicted.with_temperature(1.0).probs if raw and threshold is not None else predicted.probs
        k = min(top_k, len(self.classes))
        preds = []
        for row, score in zip(probs, scores):
            ranked = [(self.classes[i], float(row[i])) for i in np.argsort(-row)[:k]]
            rejected = threshold is not None and score < threshold
            preds.append(Prediction(UNKNOWN if rejected else ranked[0][0], ranked[0][1], ranked, ranked[0][0], bool(rejected)))
        return preds

    def describe(self) -> str:
        """The run (or runs) in words, for messages."""
        return "this model"


class TrainedModel(_Predictor):
    """A finished run's classifier with its evaluation preprocessing and class names (and, for a
    multi-label run, its ``task`` "multilabel" and per-label ``thresholds``)."""

    def __init__(self, model: Classifier, manifest: dict[str, Any], run_dir: Path | None = None) -> None:
        # NHWC: oneDNN's (and cuDNN's) convolutions run faster on it, the results are the same
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.manifest = manifest
        self.run_dir = run_dir
        self.preprocessing = preprocessing_from_manifest(manifest)
        where = run_dir / "manifest.json" if run_dir is not None else "manifest"
        self.task = task_of(manifest, where)
        multilabel = self.task == MULTILABEL
        self.thresholds = thresholds_of(manifest, where) if multilabel else None
        self.temperature = 1.0 if multilabel else manifest_temperature(manifest)
        self.rejection = None if multilabel else RejectionRule.from_manifest(manifest)

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    @property
    def size(self) -> int:
        """The crop size the model takes (what TTA views are cut to)."""
        return self.preprocessing.image_size

    @property
    def decode_side(self) -> int:
        return self.preprocessing.resize_shorter_side

    def resize(self, image: np.ndarray, shorter: int | None = None) -> np.ndarray:
        """The evaluation resize (see ``Preprocessing.resize``), passed to TTA policies."""
        return self.preprocessing.resize(image, shorter)

    def with_weights(self, state: Mapping[str, torch.Tensor]) -> "TrainedModel":
        """The same classifier, classes and preprocessing with other weights (a state dict of this
        model, e.g. averaged from a run's kept checkpoints), loaded strictly; ``self`` is unchanged.
        The run's temperature and rejection rule were fitted to its own weights: not kept (T = 1)."""
        manifest = for_weights(self.manifest, state)
        # one network of a run that ended with the probe + fine-tuned ensemble: that network, at its own preprocessing
        model = classifier_of(manifest) if manifest["backbone"] != self.manifest["backbone"] else copy.deepcopy(self.model)
        model.load_state_dict(state, strict=True)
        return TrainedModel(model.eval(), manifest, self.run_dir)

    def describe(self) -> str:
        return str(self.run_dir) if self.run_dir is not None else "this model"

    def rejection_threshold(self, reject: float | str) -> float:
        if self.rejection is None:
            raise DataError(f"--reject: {self.run_dir or 'this model'} has no rejection rule (trained before transferkit"
                            " recorded one, or without a validation split); train it again")
        if reject == "auto":
            return self.rejection.threshold
        try:
            return self.rejection.threshold_for(float(reject))
        except ValueError:
            raise DataError(f"--reject {reject}: give a false-rejection rate in [0, 1), e.g. 0.05, or auto") from None

    def predictions(
        self, images: ImageSet, tta: str | None = None, batch_size: int = BATCH_SIZE, *, raw: bool = False, on_bad: str = "error"
    ) -> Predictions:
        if tta:
            policy = create_tta(tta)
            preprocess: Any = partial(self.preprocessing.views, policy=policy)
        else:
            preprocess = self.preprocessing
        runtime = inference_runtime(self.model)
        return predict(self.model, images, preprocess, classes=self.classes, runtime=runtime, batch_size=batch_size,
                       temperature=1.0 if raw else self.temperature, activation=ACTIVATIONS[self.task],
                       desc=f"predicting{' with ' + tta if tta else ''}", on_bad=on_bad)


class Ensemble(_Predictor):
    """The mean of its members' class probabilities; members must share class names and task. A
    multi-label ensemble averages its members' sigmoid probabilities, and its thresholds are the
    mean of the members' thresholds, label by label."""

    def __init__(self, members: Sequence[TrainedModel]) -> None:
        if not members:
            raise DataError("an ensemble needs at least one run")
        first = members[0]
        for member in members[1:]:
            if member.classes != first.classes:
                raise DataError(
                    f"ensemble: {member.run_dir} has classes {member.classes}, {first.run_dir} has {first.classes};"
                    " ensemble only runs trained on the same classes"
                )
            if member.task != first.task:
                multi, single = (first, member) if first.task == MULTILABEL else (member, first)
                raise DataError(
                    f"ensemble: {multi.run_dir} is a multi-label run and {single.run_dir} a single-label one;"
                    " ensemble runs of one kind only"
                )
        self.members = list(members)
        self.classes = list(first.classes)
        self.task = first.task
        if self.task == MULTILABEL:
            self.thresholds = mean_thresholds([m.thresholds for m in self.members if m.thresholds is not None])

    @property
    def decode_side(self) -> int:
        return max(member.decode_side for member in self.members)

    def predictions(
        self, images: ImageSet, tta: str | None = None, batch_size: int = BATCH_SIZE, *, raw: bool = False, on_bad: str = "error"
    ) -> Predictions:
        """Each member predicts through its own preprocessing (and temperature); the probabilities
        are averaged over the images every member could read."""
        members = [m.predictions(images, tta=tta, batch_size=batch_size, raw=raw, on_bad=on_bad) for m in self.members]
        kept = [np.arange(len(images)) if p.kept is None else p.kept for p in members]
        common = kept[0]
        for k in kept[1:]:
            common = np.intersect1d(common, k)
        probs = [p.probs[np.isin(k, common)] for p, k in zip(members, kept)]
        skipped = {f: r for p in members for f, r in p.skipped}
        first = members[0].targets[np.isin(kept[0], common)]
        activation = ACTIVATIONS[self.task]
        if len(common) == len(images):
            return Predictions(np.mean(probs, axis=0), first, self.classes, activation=activation)
        return Predictions(np.mean(probs, axis=0), first, self.classes, kept=common, skipped=list(skipped.items()),
                           activation=activation)

    def describe(self) -> str:
        return " + ".join(str(m.run_dir) for m in self.members)


def load(run_dir: str | Path) -> TrainedModel:
    """Load a finished run directory (``model.safetensors`` + ``manifest.json``)."""
    model, manifest = load_classifier(Path(run_dir))
    return TrainedModel(model, manifest, Path(run_dir))


def load_ensemble(run_dirs: Iterable[str | Path]) -> Ensemble:
    """Several finished runs, averaged in probability space (softmax, or for multi-label runs
    sigmoid probabilities with the mean of the members' thresholds); single- and multi-label runs
    do not mix."""
    return Ensemble([load(d) for d in run_dirs])


class InputImages(ImageSet):
    """Images to predict: PIL images, arrays, tensors and file paths (decoded when used, shrunk to
    ``shorter`` at once so no full-resolution image is kept; a file that cannot be read is a
    one-line ``DataError`` naming it)."""

    def __init__(self, items: Sequence[Any], classes: Sequence[str], shorter: int | None = None) -> None:
        self.items, self.classes, self.targets = list(items), list(classes), [0] * len(items)
        self.shorter = shorter

    def load(self, index: int) -> np.ndarray:
        item = self.items[index]
        if isinstance(item, (str, Path)):
            array, reason = decode_file(item, self.shorter)
            if array is None:
                raise DataError(f"{item}: {reason}")
            return array
        return to_rgb_array(item, f"image {index}")

    def describe(self, index: int) -> str:
        item = self.items[index]
        return str(item) if isinstance(item, (str, Path)) else f"image {index}"


def input_images(images: Any, classes: Sequence[str], shorter: int | None = None) -> ImageSet:
    """What ``predict`` and ``predict_proba`` take, as an image set: an ``ImageSet``; one image
    (PIL, array, tensor, path); a batch ``[N, H, W, C]`` / ``[N, C, H, W]`` (array or tensor); a
    folder (its image files, sorted); or a list of any of these."""
    if isinstance(images, ImageSet):
        return images
    if _is_batch(images):
        items = list(images)
    elif isinstance(images, (list, tuple)):
        items = [x for item in images for x in (list(item) if _is_batch(item) else [item])]
    else:
        items = [images]
    expanded: list[Any] = []
    for item in items:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            found = image_files([item])
            if not found:
                raise DataError(f"{item}: a folder with no image files ({', '.join(IMAGE_EXTENSIONS)})")
            expanded += found
        else:
            expanded.append(item)
    return InputImages(expanded, classes, shorter)


def _is_batch(images: Any) -> bool:
    return (isinstance(images, np.ndarray) or isinstance(images, torch.Tensor)) and images.ndim == 4


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files given directly, and the image files inside given folders (sorted; hidden files and
    folders, whose names start with ".", left out)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += image_files_in(p)
        else:
            out.append(p)
    return out
