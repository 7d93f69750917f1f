"""torchvision's ImageNet checkpoints for these architectures, and how a factory loads one.

Every backbone here has torchvision's parameter and buffer names, so torchvision's
``IMAGENET1K_V1`` files load as they are, after ``adapt_state_dict`` has dropped the ImageNet
classifier. transferkit normally resolves these URLs itself (torch hub cache, then a download);
``load_imagenet`` is the factories' own ``pretrained=True`` path for use without transferkit.
"""

from __future__ import annotations

import torch
from torch import nn

from transferkit import IMAGENET_MEAN, IMAGENET_STD

from .urls import IMAGENET1K_V1, TORCHVISION  # noqa: F401  (re-exported: where they always were)

# the normalisation and input size the ImageNet checkpoints were trained with
IMAGENET_CONFIG = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input_size": (3, 224, 224)}


def load_imagenet(model: nn.Module, name: str) -> nn.Module:
    """Load torchvision's ImageNet weights for ``name`` into ``model`` (download or torch hub
    cache; ``weights_only=True``, so the file cannot run code; sha256 prefix checked)."""
    state = torch.hub.load_state_dict_from_url(
        IMAGENET1K_V1[name], map_location="cpu", check_hash=True, weights_only=True
    )
    model.load_state_dict(model.adapt_state_dict(state), strict=True)
    return model


def fill_batch_counters(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Give every BatchNorm whose statistics ``state`` holds a ``num_batches_tracked`` of 0 if it
    has none: files saved before PyTorch 0.4.1 (torchvision's old DenseNet files, which also
    use the old "norm.1" names) lack the counter. BatchNorm itself fills it in the same way, but
    only inside ``load_state_dict``, after transferkit has already reported it missing. The
    counter only matters with ``momentum=None`` (a cumulative average), which is not used here."""
    out = dict(state)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            prefix = f"{name}." if name else ""
            if prefix + "running_mean" in out and prefix + "num_batches_tracked" not in out:
                out[prefix + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return out
