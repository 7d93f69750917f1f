"""Data: image sources and splits, transforms resolved from the backbone, loaders."""

from .sources import ArrayImages, DatasetSplits, FileImages, ImageSet
from .user_datasets import WrappedDataset

__all__ = ["ArrayImages", "DatasetSplits", "FileImages", "ImageSet", "WrappedDataset"]
