"""Everything a run needs, built from a recipe before anything is written: data splits, model,
transforms, batch augmentations and the runtime. Errors here leave no run directory behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..components import create_augmentation
from ..data.decoding import DecodeReport, decode_splits
from ..data.preprocessing import Preprocessing, preprocessing_for
from ..data.sources import DatasetSplits, ImageSet, WrappedDataset, stratified_split
from ..data.transforms import ImageTransform, train_transform
from ..errors import DataError, PluginError
from ..models.backbone import create_backbone, probe_features
from ..models.classifier import Classifier
from ..plugins import registry
from ..recipe import Recipe
from .checkpoint import seed_everything
from .memory import check_training_memory
from .runtime import Runtime, resolve_runtime


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

    @property
    def image_size(self) -> int:
        return self.eval_transform.image_size


def build_splits(recipe: Recipe, dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None) -> DatasetSplits:
    """The recipe's data source, or datasets handed in through the Python API."""
    if dataset is not None:
        train = dataset if isinstance(dataset, ImageSet) else WrappedDataset(dataset)
        val = _wrap(val_dataset, train.classes)
        test = _wrap(test_dataset, train.classes)
        if val is None:
            train, val = stratified_split(train, recipe.data.val_fraction, recipe.seed)
        splits = DatasetSplits(train, val, test)
    else:
        entry = registry("dataset").get(recipe.data.source)
        try:
            splits = entry.factory(recipe.data.root, seed=recipe.seed, val_fraction=recipe.data.val_fraction, **recipe.data.params)
        except TypeError as exc:
            raise DataError(f"data.params: dataset source {recipe.data.source!r} rejected its parameters: {exc}") from None
        if not isinstance(splits, DatasetSplits):
            raise PluginError(
                f"dataset {recipe.data.source!r} (plugin {entry.provider!r}) returned {type(splits).__name__}, not DatasetSplits"
            )
    splits.check(f"data.source {recipe.data.source!r}" if dataset is None else "dataset")
    return splits


def _wrap(dataset: Any, classes: Sequence[str]) -> ImageSet | None:
    if dataset is None:
        return None
    return dataset if isinstance(dataset, ImageSet) else WrappedDataset(dataset, classes)


def build_model(recipe: Recipe, classes: Sequence[str]) -> Classifier:
    spec = recipe.backbone
    backbone = create_backbone(spec.name, weights=spec.weights, sha256=spec.sha256, **spec.params)
    model = Classifier(backbone, classes, spec.head_dropout)
    size = recipe.data.image_size or model.data_config["input_size"][-1]
    probe_features(backbone, spec.name, (3, min(int(size), 64), min(int(size), 64)))
    return model


def prepare(
    recipe: Recipe, dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None, log: Callable[[str], None] = print
) -> Prepared:
    seed_everything(recipe.seed)
    splits = build_splits(recipe, dataset, val_dataset, test_dataset)
    for note in splits.notes:
        log(note)
    model = build_model(recipe, splits.classes)
    check_training_memory(recipe, model.backbone)  # before minutes of decoding, not an out-of-memory after them
    eval_tf = preprocessing_for(model.data_config, recipe.data.image_size, recipe.data.crop_pct)
    splits, report = decode_splits(
        splits, shorter=eval_tf.resize_shorter_side, on_bad=recipe.data.on_bad_image, budget_mb=recipe.data.decode_cache_mb,
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
    return Prepared(recipe, splits, model, train_tf, eval_tf, batch_augs, resolve_runtime(recipe.train), report)


def check_decoded(recipe: Recipe, splits: DatasetSplits, report: DecodeReport, log: Callable[[str], None]) -> None:
    """What decoding found: skipped files, leakage between splits, a batch larger than the data."""
    if report.bad:
        log(f"skipped {len(report.bad)} bad image(s) (data.on_bad_image = \"skip\"): " + "; ".join(f"{p}: {r}" for p, r in report.bad))
    for pair, count in report.leaks.items():
        a, b = pair.split("/")
        log(f"warning: {count} image file(s) in {a} have the same bytes as files in {b}: the {b} accuracy may be optimistic")
    if len(splits.train) < recipe.data.batch_size:
        raise DataError(
            f"data.batch_size: {recipe.data.batch_size} is larger than the training split ({len(splits.train)} images);"
            f" lower data.batch_size to at most {len(splits.train)}"
        )
