"""The transferkit entry point (``[project.entry-points.transferkit] acme = "transferkit_acme.plugin"``).

transferkit imports this module and calls each function marked ``@hookimpl`` with a ``register``
callable; everything registered is tagged with the plugin name ``acme``. Names carry an
``acme/`` prefix so they cannot clash with another plugin's.
"""

from __future__ import annotations

from typing import Callable

from transferkit import hookimpl

from .posterize_noise import posterize_noise
from .tinyconvnet import tinyconvnet


@hookimpl
def register_backbones(register: Callable[..., None]) -> None:
    # No weights={"imagenet": URL}: with weights = "imagenet" transferkit calls
    # tinyconvnet(pretrained=True), which loads a local file (see tinyconvnet.pretrained_path).
    register("acme/tinyconvnet", tinyconvnet, description="small conv-BN-ReLU CNN, local pretrained weights")


@hookimpl
def register_augmentations(register: Callable[..., None]) -> None:
    register("acme/posterize_noise", posterize_noise, description="Gaussian noise then posterize", kind="image")
