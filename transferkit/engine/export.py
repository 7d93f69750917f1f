"""The final model: safetensors weights plus a JSON manifest that says how to rebuild and feed it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from ..errors import TransferkitError
from ..models.backbone import create_backbone
from ..models.classifier import Classifier
from .checkpoint import atomic_write

MANIFEST_VERSION = 1


def export_model(model: Classifier, run_path: Path, *, backbone: dict[str, Any], preprocessing: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``manifest.json`` into ``run_path``."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    data = save_safetensors(state, metadata={"format": "pt"})
    atomic_write(run_path / "model.safetensors", lambda fh: fh.write(data))
    manifest = {
        "format": "transferkit.classifier",
        "manifest_version": MANIFEST_VERSION,
        "backbone": backbone,
        "classes": model.classes,
        "num_features": model.backbone.num_features,
        "head_dropout": model.dropout.p if isinstance(model.dropout, torch.nn.Dropout) else 0.0,
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in model.data_config.items()},
        "preprocessing": preprocessing,
    }
    text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(run_path / "manifest.json", lambda fh: fh.write(text.encode()))


def read_manifest(run_path: Path) -> dict[str, Any]:
    path = Path(run_path) / "manifest.json"
    if not path.is_file():
        raise TransferkitError(f"{run_path}: no manifest.json; is it a finished transferkit run directory?")
    return json.loads(path.read_text())


def load_classifier(run_path: Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the classifier of a finished run (no network: the weights are in the run)."""
    run_path = Path(run_path)
    manifest = read_manifest(run_path)
    spec = manifest["backbone"]
    backbone = create_backbone(spec["name"], weights="none", **spec.get("params", {}))
    model = Classifier(backbone, manifest["classes"], manifest.get("head_dropout", 0.0))
    model.data_config.update({k: tuple(v) if isinstance(v, list) else v for k, v in manifest["data_config"].items()})
    weights = run_path / "model.safetensors"
    if not weights.is_file():
        raise TransferkitError(f"{run_path}: no model.safetensors; the run did not finish (resume it with --resume)")
    model.load_state_dict(load_file(str(weights)), strict=True)
    model.eval()
    return model, manifest


def export_prepared(prepared: Any, model: Classifier, folder: Path) -> None:
    """Export ``model`` with the backbone spec and preprocessing of a prepared run."""
    recipe = prepared.recipe
    size = prepared.image_size
    export_model(
        model,
        Path(folder),
        backbone={"name": recipe.backbone.name, "weights": model.backbone.weights_origin, "params": recipe.backbone.params},
        preprocessing={
            "image_size": size,
            "resize_shorter_side": int(round(size / recipe.data.crop_pct)),
            "resize_method": "bicubic, antialiased when shrinking (PIL Image.resize)",
            "center_crop": size,
            "mean": list(model.data_config["mean"]),
            "std": list(model.data_config["std"]),
            "channels": "RGB",
            "scale": "pixel / 255",
        },
    )
