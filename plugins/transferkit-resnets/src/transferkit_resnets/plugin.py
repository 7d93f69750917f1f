"""The transferkit entry point (``[project.entry-points.transferkit] resnets``): registers the
backbones with torchvision's ImageNet checkpoint URLs. transferkit resolves a URL itself (the
torch hub cache file named after its basename, then a download when online) and loads the file
through the module's ``adapt_state_dict``, so it calls the factories with ``pretrained=False``."""

from __future__ import annotations

import ast
from pathlib import Path

from transferkit import Register, hookimpl, lazy_factory

from .urls import IMAGENET1K_V1

HERE = Path(__file__).parent
PREFIX = "resnets/"  # the plugin's name: registered as "resnets/resnet50", the bare "resnet50" kept as an old name


def module_of(name: str) -> str:
    return "resnet" if name.startswith("res") else "densenet"


# the factory's name (the registered one after PREFIX); the factories (torch) are imported when first called
BACKBONES = {name: lazy_factory(f"{__package__}.{module_of(name)}:{name}") for name in IMAGENET1K_V1}


def descriptions() -> dict[str, str]:
    """Each factory's docstring's first line (its registered description), read from the source
    with ``ast``: the modules, which import torch, are imported only when a backbone is built."""
    out = {}
    for module in ("resnet", "densenet"):
        for node in ast.parse((HERE / f"{module}.py").read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name in IMAGENET1K_V1:
                out[node.name] = (ast.get_docstring(node) or node.name).strip().splitlines()[0].rstrip(".")
    return out


@hookimpl
def register_backbones(register: Register) -> None:
    described = descriptions()
    for name, factory in BACKBONES.items():
        register(PREFIX + name, factory, description=described.get(name, name), weights={"imagenet": IMAGENET1K_V1[name]},
                 aliases=[name])
