"""The transferkit entry point (``[project.entry-points.transferkit] resnets``): registers the
backbones with torchvision's ImageNet checkpoint URLs. transferkit resolves a URL itself (the
torch hub cache file named after its basename, then a download when online) and loads the file
through the module's ``adapt_state_dict``, so it calls the factories with ``pretrained=False``."""

from __future__ import annotations

from typing import Callable

from torch import nn

from transferkit import hookimpl

from . import densenet, resnet
from .weights import IMAGENET1K_V1

# the registered name is the factory's name; its description is its docstring's first line
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    name: getattr(resnet if name.startswith("res") else densenet, name) for name in IMAGENET1K_V1
}


def description(factory: Callable[..., nn.Module]) -> str:
    return (factory.__doc__ or factory.__name__).strip().splitlines()[0].rstrip(".")


@hookimpl
def register_backbones(register: Callable[..., None]) -> None:
    for name, factory in BACKBONES.items():
        register(name, factory, description=description(factory), weights={"imagenet": IMAGENET1K_V1[name]})
