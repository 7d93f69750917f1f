"""Everything a run needs, built from a recipe before anything is written: data splits, model,
transforms, batch augmentations and the runtime. Errors here leave no run directory behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from ..components import create_augmentation
from ..data.decoding import DecodeReport, decode_splits
from ..data.preprocessing import Preprocessing, preprocessing_for, probe_image_size
from ..data.sources import IMAGE_EXTENSIONS, DatasetSplits, FileImages, ImageSet, image_files_in
from ..data.transforms import ImageTransform, train_transform
from ..errors import DataError, RecipeError, WeightsError
from ..models.backbone import create_backbone, data_config, probe_features
from ..models.classifier import Classifier
from ..models.weights import read_state_dict
from ..plugins import registry
from ..recipe import AUTO_BACKBONE, Recipe
from .preflight.memory_estimate import check_training_memory
from .rundir.checkpoint_io import seed_everything
from .rundir.model_files import WEIGHTS_FILE, read_manifest, trained_run
from .runtime.device import Runtime, resolve_runtime
from .splits import build_splits, source_splits  # noqa: F401 - their old home
from .training.pseudo_labels import unlabeled_images


@dataclass
class Prepared:
    recipe: Recipe
    splits: DatasetSplits
    model: Classifier
    train_transform: ImageTransform
    eval_transform: Preprocessing  # what validation, test, the feature cache and the manifest use
    batch_augs: list[Callable[..., Any]]
    runtime: Runtime
    decode_report: DecodeReport = field(default_factory=DecodeReport)
    unknown: ImageSet | None = None  # data.unknown: images of none of the classes (engine/final/confidence.py)
    # phase 1's features and the probe's evaluation (``probe_preprocessing``); None: eval_transform
    probe_transform: Preprocessing | None = None
    # data.unlabeled: images nobody labelled, for phase 1's pseudo-labels (training/pseudo_labels.py)
    unlabeled: ImageSet | None = None
    unlabeled_copies: int = 0  # copies of the splits' images left out of it
    unlabeled_features: Any = None  # their features, once computed (torch.Tensor)

    @property
    def probe_preprocessing(self) -> Preprocessing:
        return self.probe_transform or self.eval_transform

    @property
    def image_size(self) -> int:
        return self.eval_transform.image_size


def build_backbone(recipe: Recipe) -> nn.Module:
    """The recipe's backbone with its starting weights: ImageNet's, none, a file, or a trained
    run's backbone (``backbone.weights = RUN_DIR``)."""
    spec = recipe.backbone
    if spec.name == AUTO_BACKBONE:
        raise RecipeError('backbone.name = "auto": the backbone is chosen when finetune starts; here name one'
                          f" (transferkit select RECIPE --backbones {','.join(spec.candidates)} ranks them)")
    run = trained_run(spec.weights)
    if run is None:
        return create_backbone(spec.name, weights=spec.weights, sha256=spec.sha256, readout=spec.readout, **spec.params)
    manifest_backbone = read_manifest(run)["backbone"]
    trained = manifest_backbone["name"]
    names = registry("backbone")
    if names.canonical(trained) != names.canonical(spec.name):  # a run of `resnet50` is one of `resnets/resnet50`
        raise RecipeError(f"backbone.weights: {run} is a run of backbone {trained!r}, not {spec.name!r}; set backbone.name = {trained!r}")
    backbone = create_backbone(spec.name, weights="none", readout=spec.readout, **spec.params)
    state = read_state_dict(run / WEIGHTS_FILE, spec.sha256)
    # an ensemble run (train.final = "ensemble") starts the network from its fine-tuned member
    prefix = "backbone.finetuned." if manifest_backbone.get("ensemble") is not None else "backbone."
    own = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    try:
        backbone.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"backbone.weights: {run}'s backbone does not fit backbone.params {spec.params}: {first}") from None
    backbone.weights_origin = f"run {run}"
    return backbone


def build_model(
    recipe: Recipe, classes: Sequence[str], backbone: nn.Module | None = None, log: Callable[[str], None] | None = None
) -> Classifier:
    """The backbone (``build_backbone`` unless given) under a new head for ``classes``; started
    from a trained run with the same classes, the run's head too."""
    spec = recipe.backbone
    backbone = backbone if backbone is not None else build_backbone(recipe)
    model = Classifier(backbone, classes, spec.head_dropout)
    size = recipe.data.image_size or model.data_config["input_size"][-1]
    probe_features(backbone, spec.name, (3, min(int(size), 64), min(int(size), 64)))
    run = trained_run(spec.weights)
    if run is not None:
        trained_classes = read_manifest(run)["classes"]
        if trained_classes == list(classes):
            state = read_state_dict(run / WEIGHTS_FILE)
            if tuple(state["head.weight"].shape) == tuple(model.head.weight.shape):
                model.head.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
                how = "its backbone and head (the same classes)"
            else:  # the ensemble's head reads both of its networks
                how = "its fine-tuned backbone, with a new head (the run ended with an ensemble of two networks)"
        else:
            how = f"its backbone, with a new head (it was trained on {len(trained_classes)} other classes)"
        if log is not None:
            log(f"starting from the trained run {run}: {how}")
    return model


def eval_preprocessing(recipe: Recipe, backbone_config: dict[str, Any]) -> Preprocessing:
    """The fine-tuned model's evaluation preprocessing (validation, test, the manifest) at
    ``data.eval_image_size`` (unset: ``data.image_size``)."""
    data = recipe.data
    return preprocessing_for(backbone_config, data.eval_image_size or data.image_size, data.crop_pct)


def probe_preprocessing(recipe: Recipe, backbone_config: dict[str, Any]) -> Preprocessing:
    """Phase 1's preprocessing (its cached features, the probe's evaluation) at
    ``phases.extract.image_size`` (unset: 8/7 of the backbone's native size unless ``data.image_size``
    is far below it: ``probe_image_size``)."""
    size = recipe.phases.extract.image_size or probe_image_size(backbone_config, recipe.data.image_size)
    return preprocessing_for(backbone_config, size, recipe.data.crop_pct)


def prepare(
    recipe: Recipe, dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None, log: Callable[[str], None] = print
) -> Prepared:
    seed_everything(recipe.seed)
    backbone = build_backbone(recipe)
    eval_tf = eval_preprocessing(recipe, data_config(backbone))
    probe_tf = probe_preprocessing(recipe, data_config(backbone))
    shorter = max(eval_tf.resize_shorter_side, probe_tf.resize_shorter_side)
    splits = build_splits(recipe, dataset, val_dataset, test_dataset, shorter=shorter)
    for note in splits.notes:
        log(f"warning: {note}")
    unlabeled, copies = unlabeled_images(recipe, splits)  # before decoding: refused in a second, not minutes
    model = build_model(recipe, splits.classes, backbone, log)
    check_training_memory(recipe, model.backbone)  # before minutes of decoding, not an out-of-memory after them
    splits, report = decode_splits(
        splits, shorter=shorter, on_bad=recipe.data.on_bad_image, budget_mb=recipe.data.decode_cache_mb,
    )
    check_decoded(recipe, splits, report, log)
    splits.check("after skipping bad images")  # a class may have lost its last training image
    image_augs = [create_augmentation(s.name, **s.params) for s in recipe.augment.image]
    batch_augs = [create_augmentation(s.name, num_classes=len(splits.classes), **s.params) for s in recipe.augment.batch]
    train_tf = train_transform(
        model.data_config,
        recipe.data.image_size,
        crop_scale=recipe.data.crop_scale,
        hflip=recipe.data.hflip,
        image_augs=image_augs,
        seed=recipe.seed,
    )
    if unlabeled is not None:
        left_out = f"; {copies} copies of the data's own images left out" if copies else ""
        log(f"data.unlabeled: {len(unlabeled)} unlabelled images for phase 1's pseudo-labels{left_out}")
    return Prepared(recipe, splits, model, train_tf, eval_tf, batch_augs, resolve_runtime(recipe.train), report,
                    unknown_images(recipe, splits.classes), probe_tf, unlabeled, copies)


def unknown_images(recipe: Recipe, classes: Sequence[str]) -> ImageSet | None:
    """``data.unknown``: every image file under the folder (its labels mean nothing), or None."""
    if recipe.data.unknown is None:
        return None
    root = Path(recipe.data.unknown)
    if not root.is_dir():
        raise DataError(f"data.unknown: {root} is not a folder; give a folder of images of none of the classes, or leave it out")
    files = image_files_in(root)
    if not files:
        raise DataError(f"data.unknown: {root} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return FileImages(files, [0] * len(files), classes)


def check_decoded(recipe: Recipe, splits: DatasetSplits, report: DecodeReport, log: Callable[[str], None]) -> None:
    """What decoding found: leakage between splits, a batch larger than the data, no validation
    split for early stopping. (Skipped files are listed once the run has a folder to list them in.)"""
    if recipe.train.early_stopping is not None and not splits.val:
        raise DataError(
            "train.early_stopping: the data has no validation split to watch; set data.val_fraction above 0,"
            " add a val/ folder, or remove train.early_stopping"
        )
    for pair, count in report.leaks.items():
        a, b = pair.split("/")
        log(f"warning: {count} image file(s) in {a} have the same bytes as files in {b}: the {b} accuracy may be optimistic;"
            f" `transferkit audit {recipe.data.root or 'DATA'}` lists them, with near-duplicates")
    if len(splits.train) < recipe.data.batch_size:
        raise DataError(
            f"data.batch_size: {recipe.data.batch_size} is larger than the training split ({len(splits.train)} images);"
            f" lower data.batch_size to at most {len(splits.train)}"
        )
