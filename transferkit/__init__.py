"""transferkit: plugin-based transfer learning for image classification.

The public API: plugins, their tests and examples import only what ``__all__`` lists (and the
``transferkit.testing`` helpers for tests), the plugin contract's typed Protocols among them
(``Register``, ``Backbone``, ``BatchAugmentation``, ``Averager``, ``TTAPolicy``). The names load on
first use (PEP 562), so ``import transferkit`` and ``from transferkit import hookimpl`` in a plugin
cost no torch import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import DataError, PluginError, RecipeError, TransferkitError, UnknownComponentError, WeightsError
from .hookspecs import hookimpl
from .imagenet import IMAGENET_MEAN, IMAGENET_STD

__version__ = "0.1.0"

# public name -> the module that defines it (imported when the name is first used)
_LAZY = {
    "finetune": "transferkit.api",
    "main": "transferkit.cli",
    "create_augmentation": "transferkit.components",
    "create_averager": "transferkit.components",
    "create_backbone": "transferkit.models.backbone",
    "list_augmentations": "transferkit.components",
    "list_averagers": "transferkit.components",
    "list_backbones": "transferkit.components",
    "list_datasets": "transferkit.components",
    "ArrayImages": "transferkit.data.sources",
    "DatasetSplits": "transferkit.data.sources",
    "FileImages": "transferkit.data.sources",
    "ImageSet": "transferkit.data.sources",
    "WrappedDataset": "transferkit.data.user_datasets",
    "read_image": "transferkit.data.sources",
    "to_rgb_array": "transferkit.data.sources",
    "Predictions": "transferkit.engine.evaluation.predict",
    "RunResult": "transferkit.engine.run",
    "KeptCheckpoint": "transferkit.engine.rundir.run_dir",
    "RunDir": "transferkit.engine.rundir.run_dir",
    "evaluate": "transferkit.evaluate_run",
    "Ensemble": "transferkit.inference",
    "Prediction": "transferkit.inference",
    "TrainedModel": "transferkit.inference",
    "create_tta": "transferkit.components",
    "load": "transferkit.inference",
    "load_ensemble": "transferkit.inference",
    "LabelSetPrediction": "transferkit.label_sets",
    "get_plugins": "transferkit.plugins",
    "Averager": "transferkit.protocols",
    "Backbone": "transferkit.protocols",
    "BatchAugmentation": "transferkit.protocols",
    "Register": "transferkit.protocols",
    "TTAPolicy": "transferkit.protocols",
    "lazy_factory": "transferkit.registry",
    "register_plugin": "transferkit.plugins",
    "Recipe": "transferkit.recipe",
    "load_recipe": "transferkit.recipe_loading",
    "check": "transferkit.workbench.check.sanity_checks",
    "lr_find": "transferkit.workbench.lr_find.steps",
    "report": "transferkit.workbench.report.content",
    "select": "transferkit.workbench.select.ranking_files",
    "suggest": "transferkit.workbench.suggest.pool",
}

__all__ = [
    "ArrayImages",
    "Averager",
    "Backbone",
    "BatchAugmentation",
    "DataError",
    "DatasetSplits",
    "Ensemble",
    "FileImages",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageSet",
    "KeptCheckpoint",
    "LabelSetPrediction",
    "PluginError",
    "Prediction",
    "Predictions",
    "Recipe",
    "RecipeError",
    "Register",
    "RunDir",
    "RunResult",
    "TTAPolicy",
    "TrainedModel",
    "TransferkitError",
    "UnknownComponentError",
    "WeightsError",
    "WrappedDataset",
    "check",
    "create_augmentation",
    "create_averager",
    "create_backbone",
    "create_tta",
    "evaluate",
    "finetune",
    "get_plugins",
    "hookimpl",
    "lazy_factory",
    "list_augmentations",
    "list_averagers",
    "list_backbones",
    "list_datasets",
    "load",
    "load_ensemble",
    "load_recipe",
    "lr_find",
    "main",
    "read_image",
    "register_plugin",
    "report",
    "select",
    "suggest",
    "to_rgb_array",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from .api import finetune
    from .cli import main
    from .components import (
        create_augmentation,
        create_averager,
        create_tta,
        list_augmentations,
        list_averagers,
        list_backbones,
        list_datasets,
    )
    from .data.sources import ArrayImages, DatasetSplits, FileImages, ImageSet, read_image, to_rgb_array
    from .data.user_datasets import WrappedDataset
    from .engine.evaluation.predict import Predictions
    from .engine.run import RunResult
    from .engine.rundir.run_dir import KeptCheckpoint, RunDir
    from .evaluate_run import evaluate
    from .inference import Ensemble, Prediction, TrainedModel, load, load_ensemble
    from .label_sets import LabelSetPrediction
    from .models.backbone import create_backbone
    from .plugins import get_plugins, register_plugin
    from .protocols import Averager, Backbone, BatchAugmentation, Register, TTAPolicy
    from .recipe import Recipe
    from .recipe_loading import load_recipe
    from .registry import lazy_factory
    from .workbench.check.sanity_checks import check
    from .workbench.lr_find.steps import lr_find
    from .workbench.report.content import report
    from .workbench.select.ranking_files import select
    from .workbench.suggest.pool import suggest
