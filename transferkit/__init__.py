"""transferkit: plugin-based transfer learning for image classification.

The public API. Plugins import only what is exported here.
"""

from .api import finetune
from .components import (
    create_augmentation,
    create_averager,
    create_backbone,
    list_augmentations,
    list_averagers,
    list_backbones,
    list_datasets,
)
from .data.sources import ArrayImages, DatasetSplits, FileImages, ImageSet, WrappedDataset, read_image, to_rgb_array
from .engine.run import RunResult
from .errors import DataError, PluginError, RecipeError, TransferkitError, UnknownComponentError, WeightsError
from .evaluation import evaluate
from .hookspecs import hookimpl
from .inference import Ensemble, Prediction, TrainedModel, create_tta, load, load_ensemble
from .plugins import get_plugins, register_plugin
from .recipe import Recipe
from .recipe_loading import load_recipe
from .workbench.check import check
from .workbench.lr_find import lr_find

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__version__ = "0.1.0"

__all__ = [
    "ArrayImages",
    "DataError",
    "Ensemble",
    "DatasetSplits",
    "FileImages",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageSet",
    "PluginError",
    "Prediction",
    "Recipe",
    "RecipeError",
    "RunResult",
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
    "list_augmentations",
    "list_averagers",
    "list_backbones",
    "list_datasets",
    "load",
    "load_ensemble",
    "load_recipe",
    "lr_find",
    "read_image",
    "register_plugin",
    "to_rgb_array",
]
