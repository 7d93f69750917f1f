"""``data.unlabeled``: images nobody labelled, used by phase 1's probe through pseudo-labels.

The probe is first fitted on the labelled training images as always (C by cross-validation). It
then labels every unlabelled image; those it labels with confidence at least
``phases.extract.pseudo_label_threshold`` join a second, final fit with their predicted class, each
weighing ``pseudo_label_weight`` (a labelled image weighs 1), at the same C. Cross-validation never
holds out a pseudo-labelled image, and phase 2 starts from the head this fit gives. Features of
the unlabelled images are computed once per run, at the probe's preprocessing (one forward pass
each).

The defaults (threshold 0.9, weight 0.3) were chosen on flowers12 and a 10-class product-photo
folder with 10 or 25 labelled images per class and the rest unlabelled (the phase-1 probe's test
top-1, mean of 3 draws; gain over the probe without them, in points, for flowers 10 / 25 and
products 10 / 25): 0.9 / 0.3 gained +2.1 / +0.1 / +0.9 / +1.1 (mean +1.05), the best mean and never
below the probe; 0.9 / 1.0 +1.8 / +0.3 / +0.6 / +1.0; 0.7 / 0.3 +1.8 / -0.1 / -0.4 / +1.1; 0.5 / 0.3
+2.1 / +0.1 / -0.7 / +1.4; every image at weight 0.3 +1.8 / +0.3 / -0.1 / +0.9; a second round of
pseudo-labels (0.7 / 1.0) +2.1 / -0.3 / -0.7 / +0.7. The recipe with
and without them on other folders: ``benchmarks/UNLABELED.md``.

The folder must hold no image of the data's own splits (by path: refused, one line); a
byte-identical copy of one (a validation or test image among them would leak) is left out and
counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from ...data.image_files import byte_copies
from ...data.sources import IMAGE_EXTENSIONS, DatasetSplits, FileImages, image_files_in
from ...errors import DataError
from .feature_cache import FeatureCache
from .probe import Extra, ProbeFit, fit_probe

if TYPE_CHECKING:
    from torch import nn

    from ...recipe import Recipe
    from ..prepare import Prepared


def _own_files(splits: DatasetSplits) -> dict[Path, str]:
    own: dict[Path, str] = {}
    for name, images in splits.parts().items():
        for path in getattr(images, "paths", []):
            own[Path(path).resolve()] = name
    return own


def unlabeled_images(recipe: Recipe, splits: DatasetSplits) -> tuple[FileImages | None, int]:
    """``data.unlabeled``'s image files (none of the splits' own), and how many copies of the
    splits' images were left out; ``(None, 0)`` without it."""
    if recipe.data.unlabeled is None:
        return None, 0
    root = Path(recipe.data.unlabeled)
    if not root.is_dir():
        raise DataError(f"data.unlabeled: {root} is not a folder; give a folder of images nobody labelled, or leave it out")
    files = image_files_in(root)
    if not files:
        raise DataError(f"data.unlabeled: {root} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    own = _own_files(splits)
    inside = [f for f in files if f.resolve() in own]
    if inside:
        names = "/".join(sorted({own[f.resolve()] for f in inside}))
        raise DataError(f"data.unlabeled: {root} holds {len(inside)} of the data's own {names} images (first: {inside[0]});"
                        " give a folder of images nobody labelled (not data.root itself)")
    copies = byte_copies(files, list(own))
    kept = [f for f in files if f not in copies]
    if not kept:
        raise DataError(f"data.unlabeled: every image in {root} is a copy of one of the data's own images; nothing unlabelled")
    return FileImages(kept, [0] * len(kept), splits.classes), len(copies)


def unlabeled_features(prepared: Prepared, backbone: nn.Module) -> torch.Tensor:
    """The unlabelled images' features at the probe's preprocessing, computed once per run."""
    if prepared.unlabeled_features is None:
        recipe = prepared.recipe
        cache = FeatureCache.compute(backbone, prepared.unlabeled, prepared.probe_preprocessing, prepared.runtime,
                                     batch_size=recipe.data.eval_batch_size or recipe.data.batch_size * 2,
                                     num_workers=recipe.data.num_workers, desc="unlabeled features")
        prepared.unlabeled_features = cache.features[0]
    return prepared.unlabeled_features


def refit_with_pseudo_labels(
    fit: ProbeFit, features: torch.Tensor, labels: torch.Tensor, unlabeled: torch.Tensor, classes: Sequence[str], *,
    threshold: float, weight: float, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None,
    copies_left_out: int = 0, blocks: Sequence[int] | None = None,
) -> ProbeFit:
    """The final fit again, with the unlabelled images ``fit`` labels confidently enough; C and
    the cross-validation record stay ``fit``'s, and so does its scaling (over ``blocks``).
    ``summary()["pseudo_labels"]`` says what was used."""
    with torch.no_grad():
        probs = torch.softmax(unlabeled.float() @ fit.weight.T + fit.bias, dim=1)
    confidence, predicted = probs.max(dim=1)
    keep = confidence >= threshold
    record = {"unlabeled_images": len(unlabeled), "used": int(keep.sum()), "threshold": threshold, "weight": weight,
              "per_class": {c: int((predicted[keep] == i).sum()) for i, c in enumerate(classes)},
              "copies_left_out": copies_left_out}
    if not bool(keep.any()):
        fit.pseudo_labels = record
        return fit
    extra = Extra(unlabeled[keep], predicted[keep], torch.full((int(keep.sum()),), float(weight)))
    refit = fit_probe(features, labels, len(classes), label_smoothing=label_smoothing, class_weights=class_weights, Cs=(fit.C,),
                      scalings=(fit.scaling,), blocks=blocks, extra=extra)
    refit.folds, refit.cv_log_loss, refit.seconds = fit.folds, fit.cv_log_loss, fit.seconds + refit.seconds
    refit.cv_scaling_log_loss = fit.cv_scaling_log_loss
    refit.pseudo_labels = record
    return refit
