"""The work of ``transferkit audit DATA`` (the command's shell is ``audit``): look for likely
mislabeled images, near-duplicates, train/test leakage and outliers in a labelled image set,
before training on it.

The recipe's backbone (frozen, evaluation mode, the evaluation preprocessing a run of the recipe
would use) computes every image's features once; everything after that works on the features
(seconds):

- label scores: out-of-fold probabilities of logistic probes on the training images, and of one
  probe fit on all of them for the validation and test images, ranked by confident learning
  (``label_scores``);
- near-duplicates by feature cosine, thumbnail correlation and file bytes, and outliers by
  k-NN distance to the training images (``similarity``).

It writes ``audit.html`` (self-contained) and ``audit.csv`` (one row per flagged image, most
suspect first) into ``output`` (default ``runs/audit/<timestamp>/``); nothing is written into
the data folder. Python: ``result = audit("path/to/images", "recipes/flowers.toml")``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.decoding import decode_splits
from ...engine.prepare import build_model, build_splits, eval_preprocessing
from ...engine.rundir.run_dir import RunDir
from ...engine.runtime.device import resolve_runtime
from ...engine.training.feature_cache import FeatureCache
from ...errors import DataError, printable
from ...recipe import Recipe
from ...recipe_loading import RecipeSource, load_recipe, parse_override
from .findings import Finding, collect_findings, count_by_kind
from .html_csv import write_audit
from .label_scores import (
    DEFAULT_FOLDS,
    LabelIssues,
    class_thresholds,
    label_probabilities,
    rank_label_issues,
)
from .similarity import (
    FEATURE_SIMILARITY,
    OUTLIER_CLASS_Z,
    DuplicatePair,
    class_relative_z,
    file_digest,
    near_duplicates,
    outlier_scores,
    pixel_signature,
    robust_z,
)

SPLITS = ("train", "val", "test")
KIND_WORDS = {
    "leak": "val/test images that duplicate an image of an earlier split",
    "duplicate": "further copies of an image in the same split",
    "mislabeled": "likely wrong labels (confident learning on out-of-fold probes)",
    "outlier": "images unlike any training image",
}


@dataclass
class AuditImages:
    """Every labelled image of the data, train then val then test, with its features."""

    classes: list[str]
    splits: list[str]
    labels: np.ndarray
    names: list[str]
    sets: dict[str, Any]  # split name -> ImageSet
    features: np.ndarray
    signatures: np.ndarray
    digests: list[str]
    seconds: float = 0.0

    def load(self, index: int) -> np.ndarray:
        for images in self.sets.values():
            if index < len(images):
                return images.load(index)
            index -= len(images)
        raise IndexError(index)

    @property
    def train(self) -> np.ndarray:
        return np.asarray([s == "train" for s in self.splits])


@dataclass
class AuditResult:
    """What the audit found; ``label_issues.order`` ranks every image by its label's probability."""

    images: AuditImages
    probs: np.ndarray
    label_issues: LabelIssues
    pairs: list[DuplicatePair]
    outlier_z: np.ndarray
    findings: list[Finding]
    output: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return count_by_kind(self.findings)


def audit_recipe(data: str | Path, recipe: RecipeSource | None = None, overrides: Sequence[str] = ()) -> Recipe:
    """The recipe pointed at DATA: a folder reads as an ImageFolder, a .csv file as a manifest;
    no validation or test images are held out at random (every image is audited where it is)."""
    path = Path(data)
    if path.is_dir():
        source = "imagefolder"
    elif path.is_file() and path.suffix.lower() == ".csv":
        source = "csv"
    else:
        raise DataError(f"{data}: not a folder or a .csv manifest; give an ImageFolder root (root/train/<class>/*.jpg)"
                        " or a CSV with columns path,label[,split]")
    pairs = {"data__source": source, "data__root": str(path), "data__val_fraction": 0.0}
    pairs.update({key.replace(".", "__"): value for key, value in map(parse_override, overrides)})
    resolved = load_recipe({} if recipe is None else recipe, pairs)
    if resolved.data.source in ("imagefolder", "csv") and "test_fraction" not in resolved.data.params:
        resolved.data.params = {**resolved.data.params, "test_fraction": 0.0}
    return resolved


def load_images(recipe: Recipe, log: Callable[[str], None] = print) -> AuditImages:
    """Decode every image once, then the backbone's features (the evaluation preprocessing a run
    of this recipe would use, frozen, evaluation mode), pixel signatures and file digests."""
    started = time.perf_counter()
    splits = build_splits(recipe)
    model = build_model(recipe, splits.classes)
    preprocessing = eval_preprocessing(recipe, model.data_config)
    splits, report = decode_splits(splits, shorter=preprocessing.resize_shorter_side, on_bad=recipe.data.on_bad_image,
                                   budget_mb=recipe.data.decode_cache_mb)
    if report.bad:
        log(f"skipped {len(report.bad)} bad image(s): " + "; ".join(f"{printable(p)}: {printable(why)}" for p, why in report.bad))
    runtime = resolve_runtime(recipe.train)
    backbone = model.backbone.to(runtime.device)
    if runtime.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    batch = recipe.data.eval_batch_size or recipe.data.batch_size * 2
    sets = {name: getattr(splits, name) for name in SPLITS if getattr(splits, name) is not None and len(getattr(splits, name))}
    features, names, labels, split_of, signatures = [], [], [], [], []
    for name, images in sets.items():
        cache = FeatureCache.compute(backbone, images, preprocessing, runtime, batch_size=batch,
                                     num_workers=recipe.data.num_workers, desc=f"{name} features")
        features.append(cache.features[0].numpy())
        labels += list(images.targets)
        names += [images.describe(i) for i in range(len(images))]
        split_of += [name] * len(images)
        signatures += [pixel_signature(images.load(i)) for i in range(len(images))]
    digests = [file_digest(n) if Path(n).is_file() else "" for n in names]
    return AuditImages(list(splits.classes), split_of, np.asarray(labels, dtype=np.int64), names, sets,
                       np.concatenate(features).astype(np.float32), np.stack(signatures), digests, time.perf_counter() - started)


def analyse(images: AuditImages, *, folds: int = DEFAULT_FOLDS, seed: int = 0,
            duplicate_similarity: float = FEATURE_SIMILARITY) -> AuditResult:
    """Label scores, duplicates and outliers of images whose features are known (seconds)."""
    started = time.perf_counter()
    train = images.train
    num_classes = len(images.classes)
    probs = np.zeros((len(images.labels), num_classes))
    probs[train], probs[~train], _ = label_probabilities(images.features[train], images.labels[train], num_classes,
                                                         images.features[~train], folds=folds, seed=seed)
    thresholds = class_thresholds(probs[train], images.labels[train], num_classes)  # the training images' scale for all
    label_issues = rank_label_issues(probs, images.labels, num_classes, thresholds=thresholds)
    pairs = near_duplicates(images.features, images.signatures, images.digests, threshold=duplicate_similarity)
    scores = outlier_scores(images.features, train, exclude_above=duplicate_similarity)
    # unlike the training images as a whole and unlike its own class: a distinct class is no outlier
    z, within = robust_z(scores, train), class_relative_z(scores, images.labels, train)
    outlier_z = np.where(within > OUTLIER_CLASS_Z, z, np.minimum(z, within))
    findings = collect_findings(splits=images.splits, labels=images.labels, classes=images.classes, names=images.names,
                                probs=probs, label_issues=label_issues, pairs=pairs, outlier_z=outlier_z)
    return AuditResult(images, probs, label_issues, pairs, outlier_z, findings, timings={"analysis": time.perf_counter() - started})


def audit(
    data: str | Path,
    recipe: RecipeSource | None = None,
    *,
    overrides: Sequence[str] = (),
    output: str | Path | None = None,
    folds: int = DEFAULT_FOLDS,
    duplicate_similarity: float = FEATURE_SIMILARITY,
    log: Callable[[str], None] | None = print,
) -> AuditResult:
    """Audit DATA (an ImageFolder root or a CSV manifest) with the recipe's backbone; write
    ``audit.html`` and ``audit.csv`` into ``output`` and return what was found."""
    say = log or (lambda _m: None)
    if folds < 2:
        raise DataError(f"--folds {folds}: give 2 or more")
    if not 0.0 < duplicate_similarity <= 1.0:
        raise DataError(f"--duplicate-similarity {duplicate_similarity}: give a cosine similarity in (0, 1], e.g. {FEATURE_SIMILARITY}")
    resolved = audit_recipe(data, recipe, overrides)
    target = Path(output) if output is not None else RunDir.timestamped("audit")
    root = Path(data).resolve()
    if root.is_dir() and (target.resolve() == root or root in target.resolve().parents):
        raise DataError(f"--output {target}: inside the data folder {data}; choose a folder outside it, so that the"
                        " audit's files never mix with the images")
    images = load_images(resolved, say)
    result = analyse(images, folds=folds, seed=resolved.seed, duplicate_similarity=duplicate_similarity)
    result.timings["features"] = images.seconds
    write_started = time.perf_counter()
    result.output = target
    write_audit(result, target, resolved)
    result.timings["analysis"] += time.perf_counter() - write_started
    for line in summary_lines(result, resolved):
        say(line)
    return result


def summary_lines(result: AuditResult, recipe: Recipe) -> list[str]:
    """The command's report: what was audited, the counts per kind, where the files are."""
    images = result.images
    per_split = ", ".join(f"{name} {images.splits.count(name)}" for name in SPLITS if name in images.splits)
    train = images.train
    accuracy = float((result.probs[train].argmax(axis=1) == images.labels[train]).mean())
    lines = [(f"audit: {len(images.labels)} images ({per_split}), {len(images.classes)} classes; {recipe.backbone.name} features"
              f" in {result.timings.get('features', 0.0):.1f} s; label probes: out-of-fold accuracy {accuracy:.3f} on train")]
    lines += [f"  {kind:<10} {count:5d}  {KIND_WORDS[kind]}" for kind, count in result.counts.items()]
    lines.append(f"audit: {len(result.findings)} images flagged, {result.timings.get('analysis', 0.0):.1f} s after the features;"
                 f" {result.output / 'audit.html'} and audit.csv")
    return lines
