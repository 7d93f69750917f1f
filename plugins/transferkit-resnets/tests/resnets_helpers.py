"""Shared by this plugin's test modules (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread while these tests run. On a 2-core machine shared with other jobs,
    OpenMP threads spin-waiting on each other made the forward passes about 10x slower; the
    results compared here do not depend on the thread count. Restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def calibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters, so that a BN loaded
    into the wrong place would change the output: fresh BNs (mean 0, var 1, gamma 1, beta 0)
    are nearly the identity in eval mode. Running statistics are set from one batch
    (momentum=None: a cumulative average, which after one batch is that batch's), which also
    keeps the features of the 100-layer networks at a moderate scale (mean |x| 0.7 to 13 here)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = None
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.2, 0.2)
    with torch.no_grad():
        model.train()(x)
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


def old_style(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A DenseNet state dict as torchvision's 2017 files hold it: "norm.1" for "norm1" inside
    dense layers, and no BatchNorm ``num_batches_tracked`` (added in PyTorch 0.4.1)."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if ".denselayer" in key:
            for part in ("norm1", "norm2", "conv1", "conv2"):
                key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        out[key] = value
    return out
