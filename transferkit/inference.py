"""Using trained runs: ``load(run_dir)`` gives a model that predicts class names from images;
``load_ensemble(run_dirs)`` averages several; ``tta=NAME`` averages over test-time views."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import albumentations as A
import numpy as np
import torch

from .data.decoding import resize_shorter
from .data.sources import IMAGE_EXTENSIONS, to_rgb_array
from .data.transforms import _INTERPOLATION, ImageTransform, eval_steps
from .engine.export import load_classifier
from .errors import DataError
from .models.classifier import Classifier
from .plugins import registry


@dataclass
class Prediction:
    label: str
    probability: float
    top_k: list[tuple[str, float]]


def create_tta(name: str, **params: Any) -> Any:
    """A test-time augmentation policy registered through ``register_tta``."""
    return registry("tta").get(name).factory(**params)


class _Predictor:
    """Shared by one model and an ensemble: ``predict`` from ``predict_proba``."""

    classes: list[str]

    def predict_proba(self, images: Sequence[Any], tta: str | None = None) -> np.ndarray:
        raise NotImplementedError

    def predict(self, images: Any, top_k: int = 1, tta: str | None = None) -> list[Prediction]:
        """The most likely class of each image, with its probability and the top-k."""
        images = [images] if not isinstance(images, (list, tuple)) else list(images)
        probs = self.predict_proba(images, tta=tta)
        k = max(1, min(top_k, len(self.classes)))
        preds = []
        for row in probs:
            ranked = [(self.classes[i], float(row[i])) for i in np.argsort(-row)[:k]]
            preds.append(Prediction(ranked[0][0], ranked[0][1], ranked))
        return preds


class TrainedModel(_Predictor):
    """A finished run's classifier with its evaluation preprocessing and class names."""

    def __init__(self, model: Classifier, manifest: dict[str, Any], run_dir: Path | None = None) -> None:
        # NHWC: oneDNN's (and cuDNN's) convolutions run faster on it, the results are the same
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.manifest = manifest
        self.run_dir = run_dir
        pre = manifest["preprocessing"]
        self.size = int(pre["image_size"])
        self.resize_to = int(pre.get("resize_shorter_side", self.size))
        interpolation = str(manifest.get("data_config", {}).get("interpolation", "bicubic"))
        self.interpolation = _INTERPOLATION.get(interpolation)
        self.transform = ImageTransform(eval_steps(self.size, self.size / self.resize_to, interpolation), pre["mean"], pre["std"])
        self.to_tensor = self.transform.to_tensor

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    def resize(self, image: np.ndarray, shorter: int | None = None) -> np.ndarray:
        """The evaluation resize: shorter side to the manifest's size, or to ``shorter``; shrinking
        as training's decoding does (antialiased), enlarging as its evaluation transform does."""
        image = resize_shorter(image, shorter or self.resize_to)
        return A.SmallestMaxSize(max_size=shorter or self.resize_to, interpolation=self.interpolation)(image=image)["image"]

    def _views(self, image: Any, policy: Any) -> list[torch.Tensor]:
        array = to_rgb_array(image)
        if policy is None:
            return [self.transform(resize_shorter(array, self.resize_to))]
        return [self.to_tensor(np.ascontiguousarray(v)) for v in policy.views(array, self.resize, self.size)]

    @torch.inference_mode()
    def predict_proba(self, images: Sequence[Any], tta: str | None = None, batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``[N, C]`` for PIL images, arrays, tensors or file paths; with
        ``tta``, the mean over that policy's views of each image."""
        policy = create_tta(tta) if tta else None
        device = next(self.model.parameters()).device
        out: list[torch.Tensor] = []
        if policy is not None:  # views of several images share a batch; each image averages its own
            pending: list[torch.Tensor] = []
            counts: list[int] = []
            for k, image in enumerate(images):
                views = self._views(image, policy)
                pending += views
                counts.append(len(views))
                if len(pending) >= batch_size or k == len(images) - 1:
                    probs = self.model(_nhwc(torch.stack(pending).to(device))).float().softmax(-1).cpu()
                    out += [chunk.mean(0, keepdim=True) for chunk in probs.split(counts)]
                    pending, counts = [], []
        else:
            for i in range(0, len(images), batch_size):
                batch = _nhwc(torch.stack([t for im in images[i : i + batch_size] for t in self._views(im, None)]).to(device))
                out.append(self.model(batch).float().softmax(-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)), dtype=np.float32)


def _nhwc(batch: torch.Tensor) -> torch.Tensor:
    return batch.contiguous(memory_format=torch.channels_last)


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

    def predict_proba(self, images: Sequence[Any], tta: str | None = None) -> np.ndarray:
        return np.mean([m.predict_proba(images, tta=tta) for m in self.members], axis=0)


def load(run_dir: str | Path) -> TrainedModel:
    """Load a finished run directory (``model.safetensors`` + ``manifest.json``)."""
    model, manifest = load_classifier(Path(run_dir))
    return TrainedModel(model, manifest, Path(run_dir))


def load_ensemble(run_dirs: Iterable[str | Path]) -> Ensemble:
    """Several finished runs, averaged in probability space."""
    return Ensemble([load(d) for d in run_dirs])


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files given directly, and the image files inside given folders (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        else:
            out.append(p)
    return out
