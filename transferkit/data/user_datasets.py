"""A user's own map-style Dataset (the Python API), read once and checked before anything trains.

The contract, one ``DataError`` line naming the item and the fix when it is broken:

- an item is ``(image, label)`` or a dict with ``"image"`` and ``"label"`` keys (Hugging Face style);
- a label is an int index into the class list or a class name (mapped through it);
- the class list is ``dataset.classes`` (or a Hugging Face ``features["label"].names``), else the
  sorted label names, else ``"0" .. "K-1"``; a class of the training set without an image is named;
- an image is a PIL image, a file path, or an array / tensor (HW, HWC or CHW) of uint8 0-255 or
  float in [0, 1]; normalised floats (``transforms.Normalize``) are refused (``to_rgb_array``);
- a validation or test set's labels are read through its own ``classes`` when it has them and
  mapped to the training set's by name.

Every ``__getitem__`` runs once: the images are converted (and shrunk to the working resolution)
in the same pass that reads the labels, and kept in memory up to ``data.decode_cache_mb``.
"""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError
from ..progress import progress
from .decoding import resize_shorter
from .sources import ImageSet, capped, to_rgb_array


class WrappedDataset(ImageSet):
    """Any map-style dataset of ``(image, label)`` pairs or ``{"image", "label"}`` dicts, read
    once (see the module's docstring). ``classes``: the class list its labels are mapped into
    (the training set's, for a validation or test set); ``role`` names it in messages
    (``dataset``, ``val_dataset``, ``test_dataset``); ``shorter``: keep images shrunk so their
    shorter side is at most this; ``budget_mb``: keep at most this much in memory (beyond it,
    items are read again when used)."""

    def __init__(
        self,
        dataset: Any,
        classes: Sequence[str] | None = None,
        *,
        role: str = "dataset",
        shorter: int | None = None,
        budget_mb: float = 4096.0,
    ) -> None:
        self.dataset, self.role, self.shorter = dataset, role, shorter
        self.notes: list[str] = []
        try:
            n = len(dataset)
        except TypeError:
            raise DataError(f"{role}: a {type(dataset).__name__} has no len(); give a map-style dataset"
                            " (__len__ and __getitem__)") from None
        if n == 0:
            raise DataError(f"{role}: the dataset is empty (len 0)")
        own = declared_classes(dataset)
        labels: list[int | str] = []
        arrays: list[np.ndarray] | None = []
        kept = 0
        for i in progress(range(n), desc=f"reading {role}", unit="item"):
            image, label = split_item(dataset[i], f"{role}[{i}]")
            labels.append(label_value(label, f"{role}[{i}]"))
            if arrays is not None:
                array = resize_shorter(to_rgb_array(image, f"{role}[{i}]"), shorter)
                kept += array.nbytes
                arrays.append(array)
                if kept > budget_mb * 2**20:
                    arrays = None
                    self.notes.append(f"{role}: its images exceed data.decode_cache_mb ({budget_mb:g} MB); they are read"
                                      " from it again whenever used")
        self.arrays = arrays
        self.classes, self.targets = resolve_labels(labels, own, classes, role, self.notes)

    def load(self, index: int) -> np.ndarray:
        if self.arrays is not None:
            return self.arrays[index]
        image, _ = split_item(self.dataset[index], f"{self.role}[{index}]")
        return resize_shorter(to_rgb_array(image, f"{self.role}[{index}]"), self.shorter)

    def describe(self, index: int) -> str:
        return f"{self.role}[{index}]"


def declared_classes(dataset: Any) -> list[str] | None:
    """``dataset.classes``, or a Hugging Face dataset's ``features["label"].names``."""
    names = getattr(dataset, "classes", None)
    if names is None:
        features = getattr(dataset, "features", None)
        label = features.get("label") if isinstance(features, Mapping) else None
        names = getattr(label, "names", None)
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise DataError(f"classes: {names!r} is not a list of class names")
    names = [str(n) for n in names]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"classes: {capped(duplicates)} listed more than once; give each class name once")
    return names


def split_item(item: Any, where: str) -> tuple[Any, Any]:
    """``(image, label)`` of one item: a pair (or longer tuple) or a dict with image/label keys."""
    if isinstance(item, Mapping):
        if "image" in item and "label" in item:
            return item["image"], item["label"]
        raise DataError(f"{where}: a dict with keys {capped(sorted(map(str, item)))}; transferkit reads the keys 'image' and 'label'")
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise DataError(f"{where}: a {type(item).__name__}, not an item; return (image, label) or {{'image': ..., 'label': ...}}")


def label_value(label: Any, where: str) -> int | str:
    """An int class index or a class name; 0-d tensors and numpy scalars are unwrapped."""
    if hasattr(label, "item") and getattr(label, "ndim", 0) == 0 and not isinstance(label, str):
        label = label.item()
    if isinstance(label, str):
        return label
    if isinstance(label, numbers.Integral) and not isinstance(label, bool):
        return int(label)
    raise DataError(f"{where}: label {label!r} ({type(label).__name__}); give an int class index or a class name")


def resolve_labels(
    labels: list[int | str], own: list[str] | None, target: Sequence[str] | None, role: str, notes: list[str]
) -> tuple[list[str], list[int]]:
    """(class names, int targets) of a dataset's raw labels. ``own``: its declared classes;
    ``target``: the training set's classes, which a validation or test set is mapped into."""
    names = own if own is not None else _names_from_labels(labels, target, role)
    index = {name: i for i, name in enumerate(names)}
    as_names = []
    for i, label in enumerate(labels):
        if isinstance(label, str):
            if label not in index:
                raise DataError(f"{role}[{i}]: label {label!r} is not one of the classes {capped(names)}")
            as_names.append(label)
        elif not 0 <= label < len(names):
            raise DataError(f"{role}[{i}]: label {label} is out of range: {len(names)} classes take labels 0 to {len(names) - 1}")
        else:
            as_names.append(names[label])
    if target is None:
        return list(names), [index[n] for n in as_names]
    target = list(target)
    if own is not None and own != target:
        unknown = [n for n in own if n not in target]
        if unknown:
            raise DataError(f"{role}.classes: {capped(unknown)} are not among the training set's classes {capped(target)}")
        notes.append(f"{role}.classes lists the classes in another order than the training set's; its labels are mapped by name")
    position = {name: i for i, name in enumerate(target)}
    missing = sorted({n for n in as_names if n not in position})
    if missing:
        raise DataError(f"{role}: labels {capped(missing)} are not among the training set's classes {capped(target)}")
    return target, [position[n] for n in as_names]


def _names_from_labels(labels: list[int | str], target: Sequence[str] | None, role: str) -> list[str]:
    kinds = {type(label) for label in labels}
    if len(kinds) > 1:
        raise DataError(f"{role}: labels mix class names and int indices; use one kind (or give the dataset a classes list)")
    if target is not None:
        return list(target)
    if kinds == {str}:
        return sorted(set(labels))  # type: ignore[arg-type]
    lowest = min(labels)  # type: ignore[type-var]
    if lowest < 0:  # type: ignore[operator]
        where = labels.index(lowest)
        raise DataError(f"{role}[{where}]: label {lowest} is negative; labels are class indices 0 to K-1, or class names")
    return [str(i) for i in range(int(max(labels)) + 1)]  # type: ignore[call-overload]
