"""A multi-label run's data, model, transforms and runtime (``Prepared``, as a single-label run's),
built from the recipe before anything is written, with the multi-hot labels beside them."""

from __future__ import annotations

from typing import Callable

from ...components import create_augmentation
from ...data.decoding import decode_splits
from ...data.multilabel_csv import MultiLabelData, read_multilabel_csv
from ...data.multilabel_labels import split_coverage
from ...data.transforms import train_transform
from ...errors import DataError
from ...models.backbone import data_config
from ...recipe import Recipe
from ..preflight.memory_estimate import check_training_memory
from ..prepare import Prepared, build_backbone, build_model, check_decoded, eval_preprocessing, probe_preprocessing
from ..rundir.checkpoint_io import seed_everything
from ..runtime.device import resolve_runtime


def prepare_multilabel(recipe: Recipe, log: Callable[[str], None] = print) -> tuple[Prepared, MultiLabelData]:
    """``prepare`` for ``task = "multilabel"``: the CSV's label sets and splits
    (``data.multilabel_csv``), decoded; a head of one logit per label."""
    if recipe.data.root is None:
        raise DataError('data.root: task = "multilabel" needs the CSV manifest; set data.root = "path/to/labels.csv"')
    seed_everything(recipe.seed)
    backbone = build_backbone(recipe)
    eval_tf = eval_preprocessing(recipe, data_config(backbone))
    probe_tf = probe_preprocessing(recipe, data_config(backbone))
    shorter = max(eval_tf.resize_shorter_side, probe_tf.resize_shorter_side)
    data = read_multilabel_csv(recipe.data.root, separator=recipe.data.label_separator, val_fraction=recipe.data.val_fraction,
                               test_fraction=recipe.data.test_fraction, seed=recipe.data.split_seed)
    for note in data.notes:
        log(f"warning: {note}")
    model = build_model(recipe, data.labels, backbone, log)
    check_training_memory(recipe, model.backbone)
    splits, report = decode_splits(data.splits, shorter=shorter, on_bad=recipe.data.on_bad_image, budget_mb=recipe.data.decode_cache_mb)
    check_decoded(recipe, splits, report, log)
    coverage = split_coverage(data.targets(splits.train.targets), data.labels, "train")
    if coverage.message:  # skipped images took a label's last positive (or negative)
        raise DataError(f"{recipe.data.root}: after skipping bad images, {coverage.message}; add images of those labels")
    data.splits = splits
    batch_augs = [create_augmentation(s.name, num_classes=len(data.labels), **s.params) for s in recipe.augment.batch]
    image_augs = [create_augmentation(s.name, **s.params) for s in recipe.augment.image]
    train_tf = train_transform(model.data_config, recipe.data.image_size, crop_scale=recipe.data.crop_scale, hflip=recipe.data.hflip,
                               image_augs=image_augs, seed=recipe.seed)
    prepared = Prepared(recipe, splits, model, train_tf, eval_tf, batch_augs, resolve_runtime(recipe.train), report,
                        probe_transform=probe_tf)
    return prepared, data
