"""Pretrained weights: load files safely, map keys by name (where they come from:
``weight_sources``). Every checkpoint loads with ``weights_only=True``: a file that needs code to
unpickle is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import WeightsError
from .weight_sources import (  # noqa: F401 - where they were first: plugins import them from here
    StateDict,
    WeightSource,
    check_reachable,
    resolve_weights,
    sha256_of,
    torch_hub_file,
    url_source,
)


def read_state_dict(path: Path, sha256: str | None = None) -> StateDict:
    """Read a .safetensors or torch checkpoint without executing code; check sha256 if given."""
    path = Path(path)
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256.lower():
            raise WeightsError(
                f"backbone.sha256: {path} has sha256 {actual}, expected {sha256}; the file is corrupt or not the one intended"
            )
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - SafetensorError, or an OSError: a crafted or damaged file
            raise WeightsError(
                f"{path}: not a readable safetensors file ({type(exc).__name__}: {str(exc)[:160]}); give an intact"
                " .safetensors or .pth file, or weights = \"imagenet\""
            ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickles needing code land here
        raise WeightsError(
            f"{path}: refused to load: it is not a plain tensor checkpoint ({type(exc).__name__}); transferkit loads"
            " only weights_only=True files; re-save it as a state dict (torch.save(model.state_dict(), f)) or safetensors"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors; save model.state_dict() instead")
    return dict(state)


def load_into(module: nn.Module, state: StateDict, origin: str) -> None:
    """Load ``state`` strictly, after the module's own key adapter; name every mismatched key."""
    adapt = getattr(module, "adapt_state_dict", None)
    if callable(adapt):
        state = adapt(state)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
                parts.append(f"{label} keys: {shown}")
        raise WeightsError(f"{origin}: does not fit the backbone: {'; '.join(parts)}")
    module.load_state_dict(state, strict=True)


def map_by_order(source: Mapping[str, torch.Tensor], target_keys: list[str], origin: str) -> StateDict:
    """Rename a checkpoint whose keys correspond one to one, in order, to ``target_keys``."""
    if len(source) != len(target_keys):
        raise WeightsError(f"{origin}: has {len(source)} tensors, the model {len(target_keys)}; not the same architecture")
    return dict(zip(target_keys, source.values()))
