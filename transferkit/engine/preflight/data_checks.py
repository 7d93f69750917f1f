"""What a recipe's data holds, read without decoding an image: images per class and split (for
``plan``), and the files that are missing or the warnings the source raised (for ``validate``)."""

from __future__ import annotations

import os

from ...data.multilabel_csv import MultiLabelData, read_multilabel_csv
from ...data.sources import DatasetSplits, FileImages, ImageSet, SubsetImages
from ...errors import BadFilesError
from ...recipe import Recipe
from ...recipe_tasks import MULTILABEL
from ..splits import build_splits


def file_paths(images: ImageSet) -> list[str] | None:
    """The file behind each image of a set of files (or a subset of one); None for images in memory."""
    if isinstance(images, FileImages) or (isinstance(images, SubsetImages) and isinstance(images.base, FileImages)):
        return [images.describe(i) for i in range(len(images))]
    return None


def check_data(recipe: Recipe) -> list[str]:
    """Read the recipe's data (folders, a CSV): one-line errors for what training would stop on
    (missing files under ``data.on_bad_image = "error"``), and the lines to show: counts, warnings."""
    labels = None
    if recipe.task == MULTILABEL:
        data = read_multilabel_csv(str(recipe.data.root), separator=recipe.data.label_separator, val_fraction=recipe.data.val_fraction,
                                   test_fraction=recipe.data.test_fraction, seed=recipe.data.split_seed)
        splits, labels = data.splits, multilabel_lines(data)
    else:
        splits = build_splits(recipe)
    missing = [(p, "no such file") for images in splits.parts().values() for p in file_paths(images) or [] if not os.path.isfile(p)]
    lines = labels or [describe_counts(splits)]
    if missing and recipe.data.on_bad_image == "error":
        raise BadFilesError(missing, "fix the paths (a CSV's paths are relative to its folder) or remove them,"
                                     ' or set data.on_bad_image = "skip"')
    if missing:
        lines.append(f"warning: {len(missing)} image file(s) do not exist and will be skipped (data.on_bad_image = \"skip\")")
    lines += [f"warning: {note}" for note in splits.notes]
    return lines


def multilabel_lines(data: MultiLabelData) -> list[str]:
    """A multi-label data set's images per split and positive images per label."""
    counts = data.counts()
    parts = ", ".join(f"{len(images)} {name}" for name, images in data.splits.parts().items())
    per_label = "; ".join(f"{label} " + "/".join(str(counts[split][label]) for split in counts) for label in data.labels)
    return [f"data: {parts} images, {len(data.labels)} labels (multi-label)",
            f"positive images per label ({'/'.join(counts)}): {per_label}"]


def describe_counts(splits: DatasetSplits) -> str:
    parts = ", ".join(f"{len(images)} {name}" for name, images in splits.parts().items())
    return f"data: {parts} images, {len(splits.classes)} classes"


def counts_table(splits: DatasetSplits) -> list[str]:
    """Images per class (rows) and split (columns), with the totals."""
    counts = splits.counts()
    names = list(counts)
    width = max([len("images per class")] + [len(c) + 2 for c in splits.classes])
    lines = ["images per class".ljust(width) + "".join(f"{n:>7}" for n in names)]
    for i, name in enumerate(splits.classes):
        lines.append(f"  {name}".ljust(width) + "".join(f"{counts[n][i]:>7}" for n in names))
    lines.append("  total".ljust(width) + "".join(f"{sum(counts[n]):>7}" for n in names))
    return lines
