"""Pretrained weights: resolve ``"imagenet"`` offline first, load files safely, map keys by name.

Resolution order for ``"imagenet"``: an installed weight package -> the timm / torch hub caches ->
a download when online -> an error that says how to supply a file. Every checkpoint loads with
``weights_only=True``: a file that needs code to unpickle is refused.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlparse

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import WeightsError

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class WeightSource:
    """One place pretrained weights may come from. ``locate`` returns a file or None; ``fetch``
    downloads it (may raise when offline)."""

    label: str
    locate: Callable[[], Path | None]
    fetch: Callable[[], Path] | None = None
    # renames a checkpoint in this source's own format to the module's keys
    adapt: Callable[[StateDict, list[str]], StateDict] | None = None
    # said when no source has the weights (e.g. which other backbone an installed file fits)
    hint: str | None = None


def resolve_weights(backbone: str, sources: list[WeightSource]) -> tuple[Path, WeightSource]:
    """The first local file among ``sources``, else the first successful download."""
    for source in sources:
        found = source.locate()
        if found is not None and Path(found).is_file():
            return Path(found), source
    errors = []
    if not _offline():
        for source in sources:
            if source.fetch is None:
                continue
            try:
                return Path(source.fetch()), source
            except Exception as exc:  # noqa: BLE001 - offline, proxy, 404...: try the next
                errors.append(f"{source.label}: {exc if isinstance(exc, ConnectionError) else type(exc).__name__}")
    tried = ", ".join(s.label for s in sources) or "no known source"
    why = f"; downloads failed ({'; '.join(errors)})" if errors else ""
    hints = "".join(f"; {s.hint}" for s in sources if s.hint)
    raise WeightsError(
        f"backbone.weights: no ImageNet weights for {backbone!r} on this machine (looked in: {tried}){why}{hints};"
        f' or download a checkpoint and set backbone.weights = "path/to/file.pth", or use weights = "none"'
    )


def _offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("TRANSFERKIT_OFFLINE", "HF_HUB_OFFLINE"))


def check_reachable(url: str, timeout: float = 5.0) -> None:
    """Raise ``ConnectionError`` at once when ``url``'s host cannot be reached (no network, no DNS):
    a download client would otherwise retry for a minute before saying the same."""
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443)
    if not host:
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"{host} unreachable ({type(exc).__name__})") from None


def torch_hub_file(url: str) -> Path:
    """Where torch.hub keeps a downloaded checkpoint (the torchvision cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def url_source(label: str, url: str) -> WeightSource:
    def locate() -> Path | None:
        path = torch_hub_file(url)
        return path if path.is_file() else None

    def fetch() -> Path:
        check_reachable(url)
        path = torch_hub_file(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=True)
        return path

    return WeightSource(label, locate, fetch)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
