"""Phase 1 on cached features: with the backbone frozen and BatchNorm in eval mode, its output
for an image does not change, so it is computed once and the head trains on the stored features
(when and how: ``phases.phase1_caches``).

Exact for the deterministic evaluation transform (``views = 1``); with ``views = K`` each image
is stored under K seeded training augmentations and epoch e trains on view e mod K.

Features larger than ``memory_mb`` (``phases.extract.feature_cache_mb``) go to a memory-mapped
file in a temporary folder, removed with the cache: its pages are read from disk as the probe's
chunks and the head's batches ask for them, so a large training set does not need its features
in memory (``benchmarks/SCALE.md``).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from torch import nn

from ...data.loaders import EpochBatchSampler, TransformedDataset, make_loader, mix_seed
from ...data.sources import ImageSet
from ...data.transforms import ImageTransform
from ...progress import progress
from ..runtime.device import Runtime

if TYPE_CHECKING:
    from ..runtime.distributed import DistContext


CHUNK_ROWS = 16_384


class _Storage:
    """``[views, N, F]`` float32 rows, in memory or, above ``memory_mb``, in a memory-mapped file
    (made at the first batch, once F is known)."""

    def __init__(self, views: int, n: int, memory_mb: float | None) -> None:
        self.views, self.n, self.memory_mb = views, n, memory_mb
        self.tensor: torch.Tensor | None = None
        self.folder: Path | None = None

    def put(self, view: int, start: int, rows: torch.Tensor) -> None:
        if self.tensor is None:
            shape = (self.views, self.n, rows.shape[1])
            if self.memory_mb is not None and np.prod(shape) * 4 / 2**20 > self.memory_mb:
                self.folder = Path(tempfile.mkdtemp(prefix="transferkit-features-"))
                self.tensor = torch.from_numpy(np.lib.format.open_memmap(self.folder / "features.npy", mode="w+",
                                                                         dtype=np.float32, shape=shape))
            else:
                self.tensor = torch.empty(shape, dtype=torch.float32)
        self.tensor[view, start:start + len(rows)] = rows


class FeatureCache:
    """Features ``[views, N, F]`` (CPU, float32; memory-mapped above a budget) and labels ``[N]``
    of one image set."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor, folder: Path | None = None) -> None:
        self.features, self.targets, self.folder = features, targets, folder
        self.on_disk = folder is not None
        if folder is not None:  # the file goes when the cache does (or at exit)
            weakref.finalize(self, shutil.rmtree, folder, True)

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(features, labels) of every view, ``rows`` at a time."""
        for view in range(self.views):
            for start in range(0, len(self), rows):
                yield self.features[view, start:start + rows], self.targets[start:start + rows]

    def all_finite(self) -> bool:
        return all(bool(torch.isfinite(features).all()) for features, _ in self.chunks())

    @property
    def views(self) -> int:
        return self.features.shape[0]

    def __len__(self) -> int:
        return self.features.shape[1]

    @classmethod
    @torch.inference_mode()
    def compute(
        cls,
        backbone: nn.Module,
        images: ImageSet,
        transform: ImageTransform,
        runtime: Runtime,
        *,
        batch_size: int,
        num_workers: int | str = 0,
        views: int = 1,
        seed: int | None = None,
        desc: str = "features",
        dist: "DistContext | None" = None,
        memory_mb: float | None = None,
    ) -> "FeatureCache":
        """Features of every image; across processes each rank computes its share, then all
        ranks hold the whole cache. ``memory_mb``: above it the features are memory-mapped."""
        was_training = backbone.training
        backbone.eval()
        storage = _Storage(views, len(images), memory_mb)
        for view in range(views):
            dataset = TransformedDataset(images, transform, seed=None if seed is None else mix_seed(seed, view))
            rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
            sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=False, rank=rank, world_size=world)
            chunks, start, sharded = [], 0, dist is not None and dist.enabled
            loader = make_loader(dataset, sampler, num_workers, runtime.device.type == "cuda")
            for inputs, _ in progress(loader, total=len(sampler), desc=f"{desc} {view + 1}/{views}"):
                with runtime.autocast():
                    rows = backbone(runtime.to_device(inputs)).float().cpu()
                if sharded:
                    chunks.append(rows)
                else:  # one process reads the images in order: rows go straight to their place
                    storage.put(view, start, rows)
                    start += len(rows)
            if sharded:
                storage.put(view, 0, torch.from_numpy(dist.gather_rows(torch.cat(chunks).numpy(), len(images))))
        backbone.train(was_training)
        assert storage.tensor is not None, "no images to compute features of"
        return cls(storage.tensor, torch.as_tensor(images.targets, dtype=torch.long), storage.folder)

    def batches(self, sampler: EpochBatchSampler, view: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        features = self.features[view % self.views]
        for index in sampler:
            idx = torch.as_tensor(index, dtype=torch.long)
            yield features[idx], self.targets[idx]
