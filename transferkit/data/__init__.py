"""Data: image sources and splits, transforms resolved from the backbone, loaders."""

from .sources import ArrayImages, DatasetSplits, FileImages, ImageSet, WrappedDataset

__all__ = ["ArrayImages", "DatasetSplits", "FileImages", "ImageSet", "WrappedDataset"]
