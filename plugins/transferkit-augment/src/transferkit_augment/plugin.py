"""The transferkit entry point (``[project.entry-points.transferkit] augment``): registers the
image-level and batch-level augmentations of this distribution."""

from __future__ import annotations

from transferkit import Register, hookimpl, lazy_factory

PREFIX = "augment/"  # the plugin's name: registered as "augment/mixup", the bare "mixup" kept as an old name


def _lazy(target: str) -> object:
    """``module:factory`` of this package, imported when first built (or inspected): loading the
    plugin imports neither albumentations nor torch."""
    return lazy_factory(f"{__package__}.{target}")


IMAGE_AUGMENTATIONS = {
    "randaugment": (_lazy("randaugment:randaugment"), "RandAugment (Cubuk et al. 2019): N ops at magnitude M (0..30 scale)"),
    "cutout": (_lazy("cutout:cutout"), "Cutout (DeVries & Taylor 2017): one mean-filled square, centre uniform, clipped"),
    "color_jitter": (_lazy("color:color_jitter"), "Colour jitter: brightness, contrast, saturation, hue in random order"),
    "pca_lighting": (_lazy("color:pca_lighting"), "AlexNet PCA lighting noise with the ImageNet RGB eigenvectors"),
}
BATCH_AUGMENTATIONS = {
    "mixup": (_lazy("mixing:mixup"), "Mixup (Zhang et al. 2018): lam ~ Beta(alpha, alpha) per batch, partner = flipped batch"),
    "cutmix": (_lazy("mixing:cutmix"), "CutMix (Yun et al. 2019): paste a box from the flipped batch, targets by pasted area"),
    "mixup_cutmix": (_lazy("mixing:mixup_cutmix"), "Mixup or CutMix per batch (switch_prob), applied with probability prob"),
}


@hookimpl
def register_augmentations(register: Register) -> None:
    for name, (factory, description) in IMAGE_AUGMENTATIONS.items():
        register(PREFIX + name, factory, description=description, kind="image", aliases=[name])
    for name, (factory, description) in BATCH_AUGMENTATIONS.items():
        register(PREFIX + name, factory, description=description, kind="batch", aliases=[name])
