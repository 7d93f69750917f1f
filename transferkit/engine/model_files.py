"""A run's model files: ``model.safetensors`` (the classifier's weights) and ``manifest.json``
(how to rebuild it and feed it: backbone, classes, preprocessing; for a run's final model also
its ``calibration`` temperature and ``rejection`` rule). Written at the end of a run,
for LR-cycle snapshots, and by plugins that make new models from a run (checkpoint averaging);
read back by ``transferkit.load``, ``evaluate``, ``predict`` and ``export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from ..data.preprocessing import Preprocessing
from ..errors import TransferkitError
from ..models.backbone import create_backbone
from ..models.classifier import Classifier
from .checkpoint import atomic_write

if TYPE_CHECKING:  # setup builds models from runs' files (backbone.weights = RUN_DIR): no import back
    from .setup import Prepared

MANIFEST_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
# entries fitted to one set of weights (engine/confidence.py): other weights must not inherit them
FITTED_TO_WEIGHTS = ("calibration", "rejection")


def write_weights(state: Mapping[str, torch.Tensor], folder: Path, name: str = WEIGHTS_FILE) -> Path:
    """``folder/model.safetensors`` (or ``name``) from a classifier's state dict, atomically."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    data = save_safetensors(tensors, metadata={"format": "pt"})
    path = Path(folder) / name
    atomic_write(path, lambda fh: fh.write(data))
    return path


def write_manifest(manifest: Mapping[str, Any], folder: Path) -> Path:
    """``folder/manifest.json``, atomically."""
    text = json.dumps(dict(manifest), indent=2) + "\n"
    path = Path(folder) / MANIFEST_FILE
    atomic_write(path, lambda fh: fh.write(text.encode()))
    return path


def uncalibrated(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest for other weights of the same classifier: without the temperature and the
    rejection rule, which were fitted to the run's own final weights (T = 1 then)."""
    return {k: v for k, v in manifest.items() if k not in FITTED_TO_WEIGHTS}


def write_model_files(
    model: Classifier, folder: Path, *, backbone: dict[str, Any], preprocessing: dict[str, Any],
    confidence: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model.safetensors`` and ``manifest.json`` into ``folder``; ``confidence``: the
    ``calibration`` and ``rejection`` entries fitted to these weights."""
    write_weights(model.state_dict(), folder)
    manifest = {
        "format": "transferkit.classifier",
        "manifest_version": MANIFEST_VERSION,
        "backbone": backbone,
        "classes": model.classes,
        "num_features": model.backbone.num_features,
        "head_dropout": model.dropout.p if isinstance(model.dropout, torch.nn.Dropout) else 0.0,
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in model.data_config.items()},
        "preprocessing": preprocessing,
        **{k: v for k, v in (confidence or {}).items() if k in FITTED_TO_WEIGHTS and v is not None},
    }
    write_manifest(manifest, Path(folder))


def write_prepared_model(prepared: Prepared, model: Classifier, folder: Path, confidence: Mapping[str, Any] | None = None) -> None:
    """``model``'s files with the backbone spec and the evaluation preprocessing of a prepared run
    (and, for the final model, its calibration and rejection rule)."""
    recipe = prepared.recipe
    preprocessing: Preprocessing = prepared.eval_transform
    write_model_files(
        model,
        Path(folder),
        backbone={"name": recipe.backbone.name, "weights": model.backbone.weights_origin, "params": recipe.backbone.params},
        preprocessing=preprocessing.to_manifest(),
        confidence=confidence,
    )


def trained_run(weights: str | Path) -> Path | None:
    """The finished run a path names (its folder, or its model.safetensors), or None: what
    ``backbone.weights = RUN_DIR`` starts from."""
    path = Path(weights)
    folder = path if path.is_dir() else path.parent if path.name == WEIGHTS_FILE else None
    return folder if folder is not None and (folder / MANIFEST_FILE).is_file() and (folder / WEIGHTS_FILE).is_file() else None


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise TransferkitError(f"{folder}: no manifest.json; is it a finished transferkit run directory?")
    return json.loads(path.read_text())


def load_classifier(folder: Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the classifier of a finished run (no network: the weights are in the run)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    spec = manifest["backbone"]
    backbone = create_backbone(spec["name"], weights="none", **spec.get("params", {}))
    model = Classifier(backbone, manifest["classes"], manifest.get("head_dropout", 0.0))
    model.data_config.update({k: tuple(v) if isinstance(v, list) else v for k, v in manifest["data_config"].items()})
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise TransferkitError(f"{folder}: no model.safetensors; the run did not finish (resume it with --resume)")
    model.load_state_dict(load_file(str(weights)), strict=True)
    model.eval()
    return model, manifest
