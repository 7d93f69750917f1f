"""Using trained runs: ``load(run_dir)`` gives a model that predicts class names from images;
``load_ensemble(run_dirs)`` averages several; ``tta=NAME`` averages over test-time views."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from .data.preprocessing import preprocessing_from_manifest
from .data.sources import IMAGE_EXTENSIONS, ArrayImages, ImageSet
from .engine.evaluation import Predictions, inference_runtime, predict
from .engine.model_files import load_classifier
from .errors import DataError
from .models.classifier import Classifier
from .plugins import registry

BATCH_SIZE = 64


@dataclass
class Prediction:
    label: str
    probability: float
    top_k: list[tuple[str, float]]


def create_tta(name: str, **params: Any) -> Any:
    """A test-time augmentation policy registered through ``register_tta``."""
    return registry("tta").get(name).factory(**params)


class _Predictor:
    """Shared by one model and an ensemble: ``predict_proba`` and ``predict`` from ``predictions``."""

    classes: list[str]

    def predictions(
        self, images: ImageSet, tta: str | None = None, batch_size: int = BATCH_SIZE, on_bad: str = "error"
    ) -> Predictions:
        """Class probabilities on a labelled image set, with its labels mapped to this model's
        classes (what ``transferkit.evaluate``, ``report`` and ``sweep`` measure). An image that
        cannot be read: ``on_bad="error"`` raises naming it, ``"skip"`` leaves it out
        (``Predictions.kept`` / ``skipped``)."""
        raise NotImplementedError

    def predict_proba(self, images: Any, tta: str | None = None, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Class probabilities ``[N, C]`` for PIL images, arrays, tensors or file paths (or an
        ``ImageSet``); with ``tta``, the mean over that policy's views of each image."""
        if not isinstance(images, ImageSet):
            images = [images] if not isinstance(images, (list, tuple)) else list(images)
            images = ArrayImages(images, [0] * len(images), self.classes)
        return self.predictions(images, tta=tta, batch_size=batch_size).probs

    def predict(self, images: Any, top_k: int = 1, tta: str | None = None) -> list[Prediction]:
        """The most likely class of each image, with its probability and the top-k."""
        return [self.ranked(row, top_k) for row in self.predict_proba(images, tta=tta)]

    def ranked(self, probs: np.ndarray, top_k: int = 1) -> Prediction:
        """One image's class probabilities as a ``Prediction`` with its top-k."""
        k = max(1, min(top_k, len(self.classes)))
        ranked = [(self.classes[i], float(probs[i])) for i in np.argsort(-probs)[:k]]
        return Prediction(ranked[0][0], ranked[0][1], ranked)


class TrainedModel(_Predictor):
    """A finished run's classifier with its evaluation preprocessing and class names."""

    def __init__(self, model: Classifier, manifest: dict[str, Any], run_dir: Path | None = None) -> None:
        # NHWC: oneDNN's (and cuDNN's) convolutions run faster on it, the results are the same
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.manifest = manifest
        self.run_dir = run_dir
        self.preprocessing = preprocessing_from_manifest(manifest)

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    @property
    def size(self) -> int:
        """The crop size the model takes (what TTA views are cut to)."""
        return self.preprocessing.image_size

    def resize(self, image: np.ndarray, shorter: int | None = None) -> np.ndarray:
        """The evaluation resize (see ``Preprocessing.resize``), passed to TTA policies."""
        return self.preprocessing.resize(image, shorter)

    def with_weights(self, state: Mapping[str, torch.Tensor]) -> "TrainedModel":
        """The same classifier, classes and preprocessing with other weights (a state dict of this
        model, e.g. averaged from a run's kept checkpoints), loaded strictly; ``self`` is unchanged."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(state, strict=True)
        return TrainedModel(model, self.manifest, self.run_dir)

    def predictions(
        self, images: ImageSet, tta: str | None = None, batch_size: int = BATCH_SIZE, on_bad: str = "error"
    ) -> Predictions:
        if tta:
            policy = create_tta(tta)
            preprocess: Any = partial(self.preprocessing.views, policy=policy)
        else:
            preprocess = self.preprocessing
        runtime = inference_runtime(self.model)
        return predict(self.model, images, preprocess, classes=self.classes, runtime=runtime, batch_size=batch_size,
                       desc=f"predicting{' with ' + tta if tta else ''}", on_bad=on_bad)


class Ensemble(_Predictor):
    """The mean of its members' class probabilities; members must share class names."""

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
        self.members = list(members)
        self.classes = list(first.classes)

    def predictions(
        self, images: ImageSet, tta: str | None = None, batch_size: int = BATCH_SIZE, on_bad: str = "error"
    ) -> Predictions:
        """Each member predicts through its own preprocessing; the probabilities are averaged over
        the images every member could read."""
        members = [m.predictions(images, tta=tta, batch_size=batch_size, on_bad=on_bad) for m in self.members]
        kept = [np.arange(len(images)) if p.kept is None else p.kept for p in members]
        common = kept[0]
        for k in kept[1:]:
            common = np.intersect1d(common, k)
        probs = [p.probs[np.isin(k, common)] for p, k in zip(members, kept)]
        skipped = {f: r for p in members for f, r in p.skipped}
        first = members[0].targets[np.isin(kept[0], common)]
        if len(common) == len(images):
            return Predictions(np.mean(probs, axis=0), first, self.classes)
        return Predictions(np.mean(probs, axis=0), first, self.classes, kept=common, skipped=list(skipped.items()))


def load(run_dir: str | Path) -> TrainedModel:
    """Load a finished run directory (``model.safetensors`` + ``manifest.json``)."""
    model, manifest = load_classifier(Path(run_dir))
    return TrainedModel(model, manifest, Path(run_dir))


def load_ensemble(run_dirs: Iterable[str | Path]) -> Ensemble:
    """Several finished runs, averaged in probability space."""
    return Ensemble([load(d) for d in run_dirs])


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files given directly, and the image files inside given folders (sorted; hidden files and
    folders, whose names start with ".", left out)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
                          and not any(part.startswith(".") for part in f.relative_to(p).parts))
        else:
            out.append(p)
    return out
