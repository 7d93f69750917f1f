"""The trained model: a backbone with a new linear head, sized by the data's classes."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .backbone import backbone_stages, data_config

_BN_TYPES = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)


class Classifier(nn.Module):
    """``backbone`` (pooled features) -> dropout -> ``head`` (Linear). The BatchNorm policy is
    re-applied on every ``train()`` call, so a loop's ``model.train()`` cannot undo it."""

    def __init__(self, backbone: nn.Module, classes: Sequence[str], dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.classes = list(classes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(backbone.num_features, len(self.classes))
        nn.init.zeros_(self.head.bias)
        nn.init.normal_(self.head.weight, std=0.01)
        self.bn_eval = True
        self.data_config: dict[str, Any] = data_config(backbone)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def stages(self) -> list[nn.Module]:
        return backbone_stages(self.backbone)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if mode and self.bn_eval:
            for module in self.backbone.modules():
                if isinstance(module, _BN_TYPES):
                    module.eval()
        return self
