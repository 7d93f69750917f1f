"""The distribution as transferkit sees it: the entry point, the registry, introspectable factories,
and the image augmentations inside the core's pipeline order."""

from __future__ import annotations

import importlib.metadata as metadata
import inspect
import warnings

import albumentations as A
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2

import transferkit
from transferkit import IMAGENET_MEAN, IMAGENET_STD
from transferkit.testing import check_batch_augmentation, check_image_augmentation
from transferkit_augment import plugin

IMAGE = set(plugin.IMAGE_AUGMENTATIONS)
BATCH = set(plugin.BATCH_AUGMENTATIONS)
ALL = {**plugin.IMAGE_AUGMENTATIONS, **plugin.BATCH_AUGMENTATIONS}


def test_entry_point_is_declared() -> None:
    eps = {ep.name: ep for ep in metadata.entry_points(group="transferkit")}
    assert eps["augment"].value == "transferkit_augment.plugin"
    assert eps["augment"].dist.name == "transferkit-augment"


def test_registered_through_transferkit_with_kinds() -> None:
    plugins = transferkit.get_plugins()
    assert plugins.info["augment"].status == "ok"
    reg = plugins.registry("augmentation")
    for name in IMAGE | BATCH:
        entry = reg.get(plugin.PREFIX + name)
        assert entry.provider == "augment" and entry.aliases == (name,)
        assert entry.extras["kind"] == ("image" if name in IMAGE else "batch")
        assert entry.description


def test_factories_are_introspectable() -> None:
    """Every parameter has a default and a type hint; a one-line docstring (for `transferkit list`)."""
    for name, (factory, _) in ALL.items():
        doc = inspect.getdoc(inspect.unwrap(factory))  # registered lazily: the function behind it
        assert doc and "\n" not in doc.strip(), name
        params = list(inspect.signature(factory).parameters.values())
        if name in BATCH:
            assert params[0].name == "num_classes"
            params = params[1:]
        for p in params:
            assert p.default is not inspect.Parameter.empty, (name, p.name)
            assert p.annotation is not inspect.Parameter.empty, (name, p.name)


def test_created_by_name_through_the_core() -> None:
    for name in IMAGE:
        aug = transferkit.create_augmentation(plugin.PREFIX + name)
        assert isinstance(aug, (A.ImageOnlyTransform, A.DualTransform, A.Compose)), name
    for name in BATCH:
        aug = transferkit.create_augmentation(plugin.PREFIX + name, num_classes=4, seed=0)
        images, targets = torch.randn(3, 3, 8, 8), torch.eye(4)[[0, 1, 3]]
        out, t = aug(images, targets)
        assert out.shape == images.shape and t.shape == targets.shape


def core_pipeline(augs: list, seed: int) -> A.Compose:
    """The core's training order: RandomResizedCrop -> HorizontalFlip -> our augs -> Normalize -> tensor."""
    return A.Compose(
        [A.RandomResizedCrop(size=(32, 32), scale=(0.25, 1.0)), A.HorizontalFlip(p=0.5), *augs,
         A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), ToTensorV2()],
        seed=seed,
    )


def test_in_the_core_pipeline_reproducible_per_item_seed() -> None:
    """The core reseeds the pipeline per (seed, epoch, index); the same seed gives the same tensor."""
    img = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    names = ["augment/randaugment", "augment/cutout", "augment/color_jitter", "augment/pca_lighting"]
    pipe = core_pipeline([transferkit.create_augmentation(n) for n in names], seed=0)
    outs = {}
    for item_seed in (11, 12, 11):
        pipe.set_random_seed(item_seed)
        outs.setdefault(item_seed, []).append(pipe(image=img)["image"])
    a, b = outs[11]
    assert a.dtype == torch.float32 and a.shape == (3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, outs[12][0])


def test_unknown_parameter_is_reported_by_the_core() -> None:
    with pytest.raises(transferkit.PluginError, match="magnitude"):
        transferkit.create_augmentation("augment/randaugment", magnitude=9)
    with pytest.raises(transferkit.PluginError, match="rejected"):
        transferkit.create_augmentation("augment/randaugment", m=99)


def test_the_old_unprefixed_names_still_build() -> None:
    """Recipes written before the prefix: "mixup" is "augment/mixup", with a one-line note (once a process)."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        aug = transferkit.create_augmentation("mixup", num_classes=4, seed=0)
    assert type(aug) is type(transferkit.create_augmentation("augment/mixup", num_classes=4, seed=0))
    assert all("'mixup' is now 'augment/mixup'" in str(w.message) for w in said)


def test_every_augmentation_conforms_to_its_contract() -> None:
    """transferkit.testing's one-call checks: image ones reproducible from the seed in the core's
    pipeline; batch ones keep shapes, dtypes and probabilities, and resume their random stream."""
    for name in IMAGE:
        check_image_augmentation(plugin.PREFIX + name)
    for name in BATCH:
        check_batch_augmentation(plugin.PREFIX + name, num_classes=4)
