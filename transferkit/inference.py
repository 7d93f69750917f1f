"""Using a trained run: ``load(run_dir)`` gives a model that predicts class names from images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .data.sources import IMAGE_EXTENSIONS, to_rgb_array
from .data.transforms import ImageTransform, eval_steps
from .engine.export import load_classifier
from .models.classifier import Classifier


@dataclass
class Prediction:
    label: str
    probability: float
    top_k: list[tuple[str, float]]


class TrainedModel:
    """A finished run's classifier with its evaluation preprocessing and class names."""

    def __init__(self, model: Classifier, manifest: dict[str, Any], run_dir: Path | None = None) -> None:
        self.model = model.eval()
        self.manifest = manifest
        self.run_dir = run_dir
        pre = manifest["preprocessing"]
        size = int(pre["image_size"])
        crop_pct = size / float(pre.get("resize_shorter_side", size))
        interp = str(manifest.get("data_config", {}).get("interpolation", "bicubic"))
        self.transform = ImageTransform(eval_steps(size, crop_pct, interp), pre["mean"], pre["std"])

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    def preprocess(self, images: Iterable[Any]) -> torch.Tensor:
        return torch.stack([self.transform(to_rgb_array(im)) for im in images])

    @torch.inference_mode()
    def predict_proba(self, images: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``[N, C]`` for PIL images, arrays, tensors or file paths."""
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(images), batch_size):
            batch = self.preprocess(images[i : i + batch_size]).to(device)
            out.append(self.model(batch).float().softmax(-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)), dtype=np.float32)

    def predict(self, images: Any, top_k: int = 1) -> list[Prediction]:
        """The most likely class of each image, with its probability and the top-k."""
        images = [images] if not isinstance(images, (list, tuple)) else list(images)
        probs = self.predict_proba(images)
        k = max(1, min(top_k, len(self.classes)))
        preds = []
        for row in probs:
            order = np.argsort(-row)[:k]
            ranked = [(self.classes[i], float(row[i])) for i in order]
            preds.append(Prediction(ranked[0][0], ranked[0][1], ranked))
        return preds


def load(run_dir: str | Path) -> TrainedModel:
    """Load a finished run directory (``model.safetensors`` + ``manifest.json``)."""
    model, manifest = load_classifier(Path(run_dir))
    return TrainedModel(model, manifest, Path(run_dir))


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files given directly, and the image files inside given folders (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        else:
            out.append(p)
    return out
