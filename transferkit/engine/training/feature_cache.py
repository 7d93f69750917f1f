"""Phase 1 on cached features: with the backbone frozen and BatchNorm in eval mode, its output
for an image does not change, so it is computed once and the head trains on the stored features
(when and how: ``phases.phase1_caches``).

Exact for the deterministic evaluation transform (``views = 1``); with ``views = K`` each image
is stored under K seeded training augmentations and epoch e trains on view e mod K.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn

from ...data.loaders import EpochBatchSampler, TransformedDataset, make_loader, mix_seed
from ...data.sources import ImageSet
from ...data.transforms import ImageTransform
from ...progress import progress
from ..runtime.device import Runtime

if TYPE_CHECKING:
    from ..runtime.distributed import DistContext


class FeatureCache:
    """Features ``[views, N, F]`` (CPU, float32) and labels ``[N]`` of one image set."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        self.features, self.targets = features, targets

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
    ) -> "FeatureCache":
        """Features of every image; across processes each rank computes its share, then all
        ranks hold the whole cache."""
        was_training = backbone.training
        backbone.eval()
        per_view = []
        for view in range(views):
            dataset = TransformedDataset(images, transform, seed=None if seed is None else mix_seed(seed, view))
            rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
            sampler = EpochBatchSampler(len(dataset), batch_size, shuffle=False, rank=rank, world_size=world)
            chunks = []
            loader = make_loader(dataset, sampler, num_workers, runtime.device.type == "cuda")
            for inputs, _ in progress(loader, total=len(sampler), desc=f"{desc} {view + 1}/{views}"):
                with runtime.autocast():
                    chunks.append(backbone(runtime.to_device(inputs)).float().cpu())
            features = torch.cat(chunks)
            if dist is not None and dist.enabled:
                features = torch.from_numpy(dist.gather_rows(features.numpy(), len(images)))
            per_view.append(features)
        backbone.train(was_training)
        return cls(torch.stack(per_view), torch.as_tensor(images.targets, dtype=torch.long))

    def batches(self, sampler: EpochBatchSampler, view: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        features = self.features[view % self.views]
        for index in sampler:
            idx = torch.as_tensor(index, dtype=torch.long)
            yield features[idx], self.targets[idx]
