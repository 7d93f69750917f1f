"""A run's model files: ``model.safetensors`` (the classifier's weights) and ``manifest.json``
(how to rebuild it and feed it: backbone, classes, preprocessing; for a run's final model also
its ``calibration`` temperature and ``rejection`` rule; for a multi-label run its ``task`` and
per-label ``thresholds``, read by ``manifest_task``). Written at the end of a run,
for LR-cycle snapshots, and by plugins that make new models from a run (checkpoint averaging);
read back by ``transferkit.load``, ``evaluate``, ``predict`` and ``export``.

Both are written with their sha256 recorded and read back verified (``artifacts``); the
manifest's classes must match the head's rows, so a manifest from another run, or with its
classes reordered, is refused instead of swapping labels silently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ...errors import CorruptFileError, TransferkitError
from ...models.backbone import create_backbone
from ...models.classifier import Classifier
from ...models.ensemble import ensemble_spec, holds_ensemble, twin_from_spec
from ...models.readout import readout_of
from .artifacts import read_verified, read_verified_json, write_verified
from .layout import MANIFEST_FILE, WEIGHTS_FILE
from .manifest_task import MULTILABEL, task_of, thresholds_of

if TYPE_CHECKING:  # setup builds models from runs' files (backbone.weights = RUN_DIR): no import back
    from ...data.preprocessing import Preprocessing  # albumentations: not for loading a recipe (validate)
    from ..prepare import Prepared

MANIFEST_VERSION = 1
# entries fitted to one set of weights (engine/final/confidence.py): other weights must not inherit them
FITTED_TO_WEIGHTS = ("calibration", "rejection")


def write_weights(state: Mapping[str, torch.Tensor], folder: Path, name: str = WEIGHTS_FILE) -> Path:
    """``folder/model.safetensors`` (or ``name``) from a classifier's state dict, atomically."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    data = save_safetensors(tensors, metadata={"format": "pt"})
    return write_verified(Path(folder) / name, data)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file written by ``write_weights``, verified against its recorded sha256;
    one that does not parse is one line naming it."""
    data = read_verified(path)
    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CorruptFileError(
            f"{path}: not a readable safetensors file ({first}); the file is damaged: restore it, or train again"
        ) from None


def write_manifest(manifest: Mapping[str, Any], folder: Path) -> Path:
    """``folder/manifest.json``, atomically, its sha256 recorded."""
    text = json.dumps(dict(manifest), indent=2) + "\n"
    return write_verified(Path(folder) / MANIFEST_FILE, text.encode())


def uncalibrated(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest for other weights of the same classifier: without the temperature and the
    rejection rule, which were fitted to the run's own final weights (T = 1 then)."""
    return {k: v for k, v in manifest.items() if k not in FITTED_TO_WEIGHTS}


def for_weights(manifest: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The manifest for ``state``, other weights of a run (a kept checkpoint, an average of them):
    ``uncalibrated``, and where the run ended with the probe + fine-tuned ensemble but ``state``
    is one network, that network's own: no ``backbone.ensemble``, its own preprocessing."""
    out = uncalibrated(manifest)
    ensemble = out["backbone"].get("ensemble")
    if ensemble is None or holds_ensemble(dict(state)):
        return out
    if "preprocessing" not in ensemble:
        raise TransferkitError("these weights are one network, but the run's manifest.json records an ensemble without"
                               " its fine-tuned network's preprocessing; train the run again to write it")
    backbone = {k: v for k, v in out["backbone"].items() if k != "ensemble"}
    return {**out, "backbone": backbone, "preprocessing": ensemble["preprocessing"],
            "num_features": int(out.get("num_features", 0)) // 2}


def write_model_files(
    model: Classifier, folder: Path, *, backbone: dict[str, Any], preprocessing: dict[str, Any],
    confidence: Mapping[str, Any] | None = None, task: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model.safetensors`` and ``manifest.json`` into ``folder``; ``confidence``: the
    ``calibration`` and ``rejection`` entries fitted to these weights; ``task``: a multi-label
    model's ``task`` and ``thresholds`` (a manifest without them is single-label)."""
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
        **(task or {}),
    }
    write_manifest(manifest, Path(folder))


def write_prepared_model(
    prepared: Prepared, model: Classifier, folder: Path, confidence: Mapping[str, Any] | None = None,
    task: Mapping[str, Any] | None = None,
) -> None:
    """``model``'s files with the backbone spec and the evaluation preprocessing of a prepared run
    (and, for the final model, its calibration and rejection rule)."""
    recipe = prepared.recipe
    preprocessing: Preprocessing = prepared.eval_transform
    write_model_files(
        model,
        Path(folder),
        backbone={"name": recipe.backbone.name, "weights": model.backbone.weights_origin, "params": recipe.backbone.params,
                  "readout": readout_of(model.backbone), **ensemble_spec(model.backbone)},
        preprocessing=preprocessing.to_manifest(),
        confidence=confidence,
        task=task,
    )


def trained_run(weights: str | Path) -> Path | None:
    """The finished run a path names (its folder, or its model.safetensors), or None: what
    ``backbone.weights = RUN_DIR`` starts from."""
    path = Path(weights)
    folder = path if path.is_dir() else path.parent if path.name == WEIGHTS_FILE else None
    return folder if folder is not None and (folder / MANIFEST_FILE).is_file() and (folder / WEIGHTS_FILE).is_file() else None


def read_manifest(folder: Path) -> dict[str, Any]:
    """``manifest.json``, verified, with the keys a model is rebuilt from (and, for a multi-label
    run, its thresholds: ``manifest_task``); one line naming the file when it is missing, damaged
    or incomplete."""
    path = Path(folder) / MANIFEST_FILE
    if not Path(folder).is_dir():
        raise TransferkitError(f"{folder}: no such run directory; give the directory a finetune run wrote (RUN_DIR)")
    if not path.is_file():
        raise TransferkitError(f"{folder}: no manifest.json; is it a finished transferkit run directory?")
    manifest = read_verified_json(path)
    try:
        missing = [k for k in ("backbone", "classes", "data_config", "preprocessing") if k not in manifest]
        if missing:
            raise KeyError(missing[0])
        str(manifest["backbone"]["name"])
        int(manifest["preprocessing"]["image_size"])
        ensemble = manifest["backbone"].get("ensemble")
        if ensemble is not None:  # the probe + fine-tuned ensemble (models/ensemble.py)
            int(ensemble["finetuned_size"])
            if "preprocessing" in ensemble:
                int(ensemble["preprocessing"]["image_size"])
        if not isinstance(manifest["classes"], list) or not all(isinstance(c, str) for c in manifest["classes"]):
            raise TypeError("classes is not a list of names")
    except (ValueError, KeyError, TypeError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise CorruptFileError(
            f"{path}: not a valid transferkit manifest ({what}); the run did not finish writing it - train it again"
        ) from None
    if task_of(manifest, path) == MULTILABEL:
        thresholds_of(manifest, path)  # a multi-label run answers nothing without them: refused here, naming the file
    return manifest


def classifier_of(manifest: Mapping[str, Any]) -> Classifier:
    """The classifier a manifest describes, untrained (its weights are loaded next)."""
    spec = manifest["backbone"]
    backbone = twin_from_spec(lambda: create_backbone(spec["name"], weights="none", readout=spec.get("readout", "pooled"),
                                                      **spec.get("params", {})), spec)
    model = Classifier(backbone, manifest["classes"], manifest.get("head_dropout", 0.0))
    model.data_config.update({k: tuple(v) if isinstance(v, list) else v for k, v in manifest["data_config"].items()})
    return model


def load_classifier(folder: Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the classifier of a finished run (no network: the weights are in the run). The
    manifest and the weights are verified against their recorded sha256, and the manifest's
    classes against the head."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise TransferkitError(f"{folder}: no model.safetensors; the run did not finish (resume it with --resume)")
    state = read_weights(weights)
    head = state.get("head.weight")
    if head is not None and head.shape[0] != len(manifest["classes"]):
        raise CorruptFileError(
            f"{folder / MANIFEST_FILE}: names {len(manifest['classes'])} classes but {weights} has a head for {head.shape[0]};"
            " the two files come from different runs: restore the run's own manifest"
        )
    model = classifier_of(manifest)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CorruptFileError(
            f"{weights}: does not fit the manifest's model ({first}); the file is from another run - restore the run's own files"
        ) from None
    model.eval()
    return model, manifest
