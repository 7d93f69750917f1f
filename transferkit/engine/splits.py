"""A recipe's data splits: its registered data source's, or datasets handed in through the Python
API. No torch on the source's path, so that ``validate`` counts a recipe's images at once."""

from __future__ import annotations

from typing import Any

from ..components import call_factory, rejected, signature_rejects
from ..data.sources import DatasetSplits, ImageSet, stratified_split
from ..errors import DataError, PluginError, RecipeError
from ..plugins import registry
from ..recipe import Recipe
from ..recipe_tasks import MULTILABEL, MULTILABEL_COMMANDS
from ..registry import factory_parameters


def build_splits(
    recipe: Recipe, dataset: Any = None, val_dataset: Any = None, test_dataset: Any = None, *, shorter: int | None = None
) -> DatasetSplits:
    """The recipe's data source, or datasets handed in through the Python API (read once,
    images shrunk to ``shorter``: see ``data.user_datasets``). Single-label: a multi-label
    recipe's data is ``data.multilabel_csv``'s, and the commands that come here refuse it."""
    if recipe.task == MULTILABEL:
        raise RecipeError(f'task = "multilabel": this command takes single-label recipes for now; {MULTILABEL_COMMANDS}')
    if dataset is not None:
        splits = _user_splits(recipe, dataset, val_dataset, test_dataset, shorter)
    else:
        splits = source_splits(recipe)
    splits.check(f"data.source {recipe.data.source!r}" if dataset is None else "dataset")
    return splits


def source_splits(recipe: Recipe) -> DatasetSplits:
    """The splits the recipe's registered data source makes, seeded by ``data.split_seed``."""
    data = recipe.data
    entry = registry("dataset").get(data.source)
    kwargs: dict[str, Any] = {"seed": data.split_seed, "val_fraction": data.val_fraction, **data.params}
    if data.test_fraction is not None:
        if "test_fraction" not in factory_parameters(entry.factory):
            raise RecipeError(
                f"data.test_fraction: data source {data.source!r} does not split off a test set (it brings its own);"
                " remove data.test_fraction"
            )
        kwargs["test_fraction"] = data.test_fraction
    unbound = signature_rejects(entry.factory, (data.root,), kwargs)
    if unbound is not None:  # the recipe's to fix; a TypeError inside the source is the plugin's bug (call_factory)
        raise DataError(f"data.params: {rejected('dataset', entry, unbound)}") from None
    splits = call_factory("dataset", entry, data.root, **kwargs)
    if not isinstance(splits, DatasetSplits):
        raise PluginError(f"dataset {data.source!r} (plugin {entry.provider!r}) returned {type(splits).__name__}, not DatasetSplits")
    return splits


def _user_splits(recipe: Recipe, dataset: Any, val_dataset: Any, test_dataset: Any, shorter: int | None) -> DatasetSplits:
    from ..data.user_datasets import WrappedDataset  # torch: a Python API dataset

    budget, seed = recipe.data.decode_cache_mb, recipe.data.split_seed
    train = dataset if isinstance(dataset, ImageSet) else WrappedDataset(dataset, role="dataset", shorter=shorter, budget_mb=budget)
    val, test = (
        None if given is None else given if isinstance(given, ImageSet)
        else WrappedDataset(given, train.classes, role=role, shorter=shorter, budget_mb=budget)
        for given, role in ((val_dataset, "val_dataset"), (test_dataset, "test_dataset"))
    )
    notes = [note for part in (train, val, test) for note in getattr(part, "notes", [])]
    if test is None and recipe.data.test_fraction:
        train, test = stratified_split(train, recipe.data.test_fraction, seed)
    if val is None:
        train, val = stratified_split(train, recipe.data.val_fraction, seed)
    return DatasetSplits(train, val, test, notes)
