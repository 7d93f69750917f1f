"""The built-in backbones' factories (torch, timm, torchvision): every timm model and every
torchvision classification model wrapped to the backbone contract (pooled features, no
classifier). Imported when a backbone is first built; their names and weights: ``backbones``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models.backbone import IMAGENET_DATA_CONFIG
from ..models.weights import StateDict


class FeatureBackbone(nn.Module):
    """A classification network with its classifier removed, exposing the backbone contract.

    ``read_stages(k)`` (timm networks with ``forward_intermediates``): the features become the
    pooled output followed by the global average of each of the last ``k`` feature stages' outputs
    (``backbone.readout = "stages"``, models/readout.py)."""

    def __init__(self, body: nn.Module, num_features: int, data_config: dict[str, Any], classifier_prefixes: tuple[str, ...]):
        super().__init__()
        self.body = body
        self.num_features = int(num_features)
        self.data_config = data_config
        self._classifier_prefixes = classifier_prefixes
        self.readout_stages = 0

    def stage_widths(self) -> list[int] | None:
        """The channels of each feature stage, input to output, or None when the network cannot
        return its stages' outputs (no timm ``forward_intermediates``)."""
        info = getattr(self.body, "feature_info", None)
        if not hasattr(self.body, "forward_intermediates") or not hasattr(self.body, "forward_head") or not info:
            return None
        return [int(stage["num_chs"]) for stage in info]

    def read_stages(self, k: int) -> None:
        widths = self.stage_widths()
        if widths is None or not 0 < k <= len(widths) or self.readout_stages:
            raise ValueError(f"cannot read the last {k} stages of a network with stages {widths} (reading {self.readout_stages})")
        self.num_features += sum(widths[-k:])
        self.readout_stages = k

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.readout_stages:
            return self.body(images)
        final, stages = self.body.forward_intermediates(images, indices=self.readout_stages)
        pooled = self.body.forward_head(final, pre_logits=True)
        return torch.cat([pooled.flatten(1), *(stage.mean((2, 3)) for stage in stages)], 1)

    def adapt_state_dict(self, state: StateDict) -> StateDict:
        """Accept the wrapped network's own checkpoints: drop its classifier, add our prefix."""
        out = {}
        for key, value in state.items():
            bare = key[len("body.") :] if key.startswith("body.") else key
            if any(bare == p or bare.startswith(p + ".") for p in self._classifier_prefixes):
                continue
            out["body." + bare] = value
        return out


# -- timm ------------------------------------------------------------------------------------------
def create_timm(model_name: str, pretrained: bool = False, **params: Any) -> FeatureBackbone:
    import timm
    from timm.data import resolve_data_config

    body = _create_any_size(timm, model_name, params)
    cfg = resolve_data_config({}, model=body)
    classifier = body.pretrained_cfg.get("classifier", "classifier") if body.pretrained_cfg else "classifier"
    prefixes = tuple(classifier) if isinstance(classifier, (list, tuple)) else (classifier,)
    data_config = {k: cfg[k] for k in ("mean", "std", "input_size", "crop_pct", "interpolation") if k in cfg}
    # timm's pooled output is ``head_hidden_size`` wide where a head block follows the pooling
    # (MobileNetV3's conv_head: 1024 for mobilenetv3_small_050, whose num_features is 288)
    width = getattr(body, "head_hidden_size", None) or body.num_features
    return FeatureBackbone(body, width, data_config, prefixes)


# Vision transformers (ViT, DeiT, CLIP, DINOv2, Swin...) are built for one input size (DINOv2: 518
# px) and assert on any other: these ask timm to resample the position embedding to the image
# size given (and pad to the patch size), so data.image_size works for them as for a CNN. Models
# that do not take them (CNNs) are built without; a recipe's own img_size is used as it is.
ANY_SIZE = ({"dynamic_img_size": True, "dynamic_img_pad": True}, {"dynamic_img_size": True}, {})


def _create_any_size(timm: Any, model_name: str, params: dict[str, Any]) -> nn.Module:
    if {"img_size", "dynamic_img_size", "dynamic_img_pad"} & set(params):
        return timm.create_model(model_name, pretrained=False, num_classes=0, **params)
    for i, extra in enumerate(ANY_SIZE):
        try:
            return timm.create_model(model_name, pretrained=False, num_classes=0, **params, **extra)
        except TypeError as exc:
            if i == len(ANY_SIZE) - 1 or not any(k in str(exc) for k in extra):
                raise
    raise AssertionError("unreachable")


# -- torchvision -----------------------------------------------------------------------------------
def create_torchvision(model_name: str, pretrained: bool = False, **params: Any) -> FeatureBackbone:
    import torchvision

    body = torchvision.models.get_model(model_name, weights=None, **params)
    qualified, linear = _last_linear(body, model_name)
    parent_name, _, attr = qualified.rpartition(".")
    parent = body.get_submodule(parent_name) if parent_name else body
    setattr(parent, attr, nn.Identity())
    return FeatureBackbone(body, linear.in_features, dict(IMAGENET_DATA_CONFIG), (qualified,))


def _last_linear(body: nn.Module, model_name: str) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in body.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"torchvision/{model_name} has no linear classifier to replace; use another backbone")
    return linears[-1]
