"""The transferkit entry point (``[project.entry-points.transferkit] resnets``): registers the
backbones with torchvision's ImageNet checkpoint URLs; transferkit resolves them (torch hub
cache first, then a download when online) and loads them through ``adapt_state_dict``."""

from __future__ import annotations

from typing import Callable

from transferkit import hookimpl

from . import densenet, resnet

BASE = "https://download.pytorch.org/models/"
# torchvision's IMAGENET1K_V1 checkpoints: same architecture, same parameter names
WEIGHTS = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
    "resnext50_32x4d": "resnext50_32x4d-7cdf4587.pth",
    "resnext101_32x8d": "resnext101_32x8d-8ba56ff5.pth",
    "resnext101_64x4d": "resnext101_64x4d-173b62eb.pth",
    "densenet121": "densenet121-a639ec97.pth",
    "densenet161": "densenet161-8d451a50.pth",
    "densenet169": "densenet169-b2777c0a.pth",
    "densenet201": "densenet201-c1103571.pth",
}


def factories() -> dict[str, Callable]:
    return {name: getattr(resnet if name.startswith("res") else densenet, name) for name in WEIGHTS}


@hookimpl
def register_backbones(register: Callable[..., None]) -> None:
    for name, factory in factories().items():
        register(name, factory, description=(factory.__doc__ or name).strip(), weights={"imagenet": BASE + WEIGHTS[name]})
