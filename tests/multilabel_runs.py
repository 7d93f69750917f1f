"""A multi-label run directory as the training engine writes one (issue 26), made without training:
a tiny ``Classifier`` with a spread-out random head, its model files written by
``write_model_files``, then ``"task": "multilabel"`` and per-label thresholds added to its manifest,
and a ``recipe.toml`` whose ``data.root`` holds a few generated images (what export verifies on)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import tomli_w
import torch

import transferkit
from transferkit.engine.rundir.artifacts import write_verified
from transferkit.engine.rundir.manifest_task import multilabel_entries
from transferkit.engine.rundir.model_files import write_manifest, write_model_files
from transferkit.models.backbone import create_backbone
from transferkit.models.classifier import Classifier
from transferkit.testing import TINY_BACKBONE, write_image_folder

LABELS = ["dress", "hat", "shirt", "shoe"]
PREPROCESSING = {
    "image_size": 32, "resize_shorter_side": 36, "center_crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
    "channels": "RGB", "scale": "pixel / 255",
}


def image_files(images: Path) -> list[str]:
    """The generated test images (12: 4 each of red, green and blue), sorted."""
    return [str(f) for f in sorted((Path(images) / "test").rglob("*.png"))]


def write_multilabel_run(folder: Path, images: Path, thresholds: Sequence[float] | None = None, seed: int = 0) -> Path:
    """A multi-label run of ``tiny/cnn`` (registered by the caller) over ``LABELS`` in ``folder``.
    ``thresholds``: each label's; by default the median of its probabilities on ``images``' test
    files, so that about half of them pass each label."""
    torch.manual_seed(seed)
    model = Classifier(create_backbone(TINY_BACKBONE, weights="none"), LABELS).eval()
    with torch.no_grad():  # logits of a few units: probabilities spread over (0, 1), not all 0.5
        model.head.weight.normal_(0.0, 3.0)
        model.head.bias.normal_(0.0, 0.5)
    spec = {"name": TINY_BACKBONE, "weights": "none", "params": {}, "readout": "pooled"}
    write_model_files(model, folder, backbone=spec, preprocessing=PREPROCESSING)
    set_thresholds(folder, [0.5] * len(LABELS))
    if thresholds is None:
        thresholds = np.median(transferkit.load(folder).predict_proba(image_files(images)), axis=0).tolist()
    set_thresholds(folder, thresholds)
    write_verified(Path(folder) / "recipe.toml", tomli_w.dumps({"data": {"root": str(images)}}).encode())
    return Path(folder)


def set_thresholds(folder: Path, values: Sequence[float], rule: str = "f1") -> None:
    """The run's manifest with ``"task": "multilabel"`` and these thresholds (checksum recorded)."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    write_manifest({**manifest, **multilabel_entries(values, rule)}, folder)


def edit_manifest(folder: Path, **entries: object) -> None:
    """The run's manifest with ``entries`` set (``None``: removed), checksum recorded, unchecked."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    manifest.update(entries)
    write_manifest({k: v for k, v in manifest.items() if v is not None}, folder)


@pytest.fixture
def labelled_images(tmp_path: Path) -> Path:
    """root/test/{red,green,blue}/ with 4 40-px PNGs each."""
    return write_image_folder(tmp_path / "images", {"test": 4})


@pytest.fixture
def multilabel_run(tiny_backbone: str, labelled_images: Path, tmp_path: Path) -> Path:
    """A multi-label tiny run (``write_multilabel_run``) with ``tiny/cnn`` registered for the test."""
    return write_multilabel_run(tmp_path / "run", labelled_images)
