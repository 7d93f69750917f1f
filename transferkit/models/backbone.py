"""The backbone contract and how the core builds one: registry lookup, weights, validation.

A backbone (``transferkit.protocols.Backbone``) maps images ``[N, 3, H, W]`` to pooled features
``[N, num_features]``. Optional ``stages`` (input to output) drive stage-wise freezing; optional
``data_config`` gives the normalisation and input size it was trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..components import call_factory, label
from ..errors import PluginError, WeightsError
from ..imagenet import IMAGENET_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD
from ..plugins import registry
from ..protocols import check_built
from .readout import apply_readout
from .weight_sources import local_weights, resolve_weights, weight_sources  # noqa: F401 - local_weights: its old home
from .weights import load_into, read_state_dict

IMAGENET_DATA_CONFIG = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input_size": IMAGENET_INPUT_SIZE}
_CONTAINERS = (nn.Sequential, nn.ModuleList)
_STAGE_CONTAINERS = ("features", "blocks", "stages", "layers")


def create_backbone(
    name: str,
    pretrained: bool = False,
    *,
    weights: str | None = None,
    sha256: str | None = None,
    readout: str = "pooled",
    **params: Any,
) -> nn.Module:
    """Build a registered backbone. ``weights``: "imagenet" | "none" | a file path
    (``pretrained=True`` is shorthand for "imagenet"); ``readout``: "pooled" | "stages" | "auto"
    (models/readout.py)."""
    entry = registry("backbone").get(name)
    weights = weights or ("imagenet" if pretrained else "none")
    declared = entry.extras.get("weights", {})
    self_loading = weights == "imagenet" and "imagenet" not in declared and entry.extras.get("sources") is None
    try:  # parameters it does not take, and a TypeError of its own, are told apart there
        module = call_factory("backbone", entry, pretrained=self_loading, **params)
    except PluginError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PluginError(f"{label('backbone', entry)} failed to build: {type(exc).__name__}: {exc}") from exc
    check_contract(module, entry.name, entry.provider)
    apply_readout(module, readout, entry.name, entry.provider)
    if weights == "imagenet" and not self_loading:
        path, source = resolve_weights(name, weight_sources(entry))
        _load_file(module, path, None, f"{source.label}: {path}", source.adapt)
        module.weights_origin = f"imagenet ({source.label})"
    elif weights not in ("imagenet", "none"):
        _load_file(module, Path(weights), sha256, f"backbone.weights {weights}")
        module.weights_origin = str(weights)
    else:
        module.weights_origin = weights
    return module


def _load_file(module: nn.Module, path: Path, sha256: str | None, origin: str, adapt=None) -> None:
    state = read_state_dict(path, sha256)
    if adapt is not None:  # a checkpoint format of the source's own (e.g. keys renamed by order)
        state = adapt(state, list(module.state_dict()))
    load_into(module, state, origin)


def check_contract(module: Any, name: str, provider: str) -> None:
    """A backbone that breaks the contract (``protocols.Backbone``) is named, with its plugin,
    when it is built: before training starts."""
    problem = contract_problem(module)
    if problem:
        raise PluginError(f"backbone {name!r} (plugin {provider!r}) {problem}")


def contract_problem(module: Any) -> str | None:
    """What is wrong with a built backbone, in words, or None."""
    if not isinstance(module, nn.Module):
        return f"returned {type(module).__name__}, not an nn.Module"
    nf = getattr(module, "num_features", None)
    if not isinstance(nf, int) or isinstance(nf, bool) or nf <= 0:
        return "has no positive int attribute num_features"
    problem = check_built("backbone", module)
    if problem:
        return problem
    stages = getattr(module, "stages", None)
    if stages is not None and not isinstance(stages, nn.Sequential):
        if callable(stages) and not isinstance(stages, nn.Module):
            return "has a stages method: make it an attribute or a property (a list of modules, input to output)"
        if isinstance(stages, (str, bytes, Mapping)) or not hasattr(stages, "__iter__"):
            return f"has stages of type {type(stages).__name__}: a list, tuple or nn.ModuleList of modules, input to output"
        odd = [type(s).__name__ for s in stages if not isinstance(s, nn.Module)]
        if odd:
            return f"has stages that are not modules ({', '.join(odd[:3])}): a list of nn.Module, input to output"
    config = getattr(module, "data_config", None)
    if config is not None and not isinstance(config, Mapping):
        return f"has a data_config of type {type(config).__name__}: a dict with mean, std and input_size"
    return None


def probe_features(module: nn.Module, name: str, input_size: tuple[int, int, int]) -> None:
    """Run one tiny batch to check the output is ``[N, num_features]``; name the plugin if not."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(2, *input_size))
    finally:
        module.train(was_training)
    expected = (2, module.num_features)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        provider = registry("backbone").get(name).provider if name in registry("backbone") else "?"
        raise PluginError(
            f"backbone {name!r} (plugin {provider!r}) returned features of shape {got} for a batch of 2, expected {expected}:"
            " forward must return pooled features [N, num_features] (pool and flatten them)"
        )


def backbone_stages(module: nn.Module) -> list[nn.Module]:
    """The backbone's ``stages`` (a list, tuple or ``nn.ModuleList``), or a generic split: top-level
    children, containers opened one level, runs of small modules (stem convolution + norm) merged
    into one stage. An ``nn.Sequential`` named ``stages`` is the network's body (timm's ConvNeXt,
    RegNet...): the split opens it and keeps the stem and the modules after it."""
    declared = getattr(module, "stages", None)
    if isinstance(declared, nn.ModuleList) or (declared is not None and not callable(declared)):
        return [m for m in declared if _has_params(m)]
    root = getattr(module, "body", module)
    children = [c for c in root.children() if _has_params(c)]
    containers = [c for c in children if isinstance(c, _CONTAINERS) and len(c) > 1]
    # a container named like timm's `blocks` / torchvision's `features`, or the only container,
    # holds the stages: open it; several others (ResNet's layer1..layer4) are the stages themselves
    named = dict(root.named_children())
    opened = next((named[n] for n in _STAGE_CONTAINERS if named.get(n) in containers), None)
    if opened is None and len(containers) == 1:
        opened = containers[0]
    stages: list[nn.Module] = []
    pending: list[nn.Module] = []
    for child in children:
        if child is opened:
            if pending:
                stages.append(_merge(pending))
                pending = []
            stages.extend(c for c in child if _has_params(c))
        elif isinstance(child, _CONTAINERS) and child in containers:
            if pending:
                stages.append(_merge(pending))
                pending = []
            stages.append(child)
        else:
            pending.append(child)
    if pending:
        stages.append(_merge(pending))
    return stages


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _merge(modules: list[nn.Module]) -> nn.Module:
    return modules[0] if len(modules) == 1 else nn.ModuleList(modules)


def data_config(module: nn.Module) -> dict[str, Any]:
    cfg = dict(IMAGENET_DATA_CONFIG)
    cfg.update(getattr(module, "data_config", None) or {})
    cfg["mean"], cfg["std"] = tuple(cfg["mean"]), tuple(cfg["std"])
    cfg["input_size"] = tuple(cfg["input_size"])
    return cfg


__all__ = ["create_backbone", "backbone_stages", "data_config", "check_contract", "probe_features", "WeightsError"]
