"""Where a backbone's pretrained weights may come from, and whether they are on this machine,
without importing torch (``transferkit list backbones`` and ``validate`` ask this of thousands
of backbones in well under a second).

Resolution order for ``"imagenet"``: an installed weight package -> the timm / torch hub caches ->
a download when online -> an error that says how to supply a file.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlparse

from ..errors import WeightsError
from ..plugins import registry

if TYPE_CHECKING:
    import torch

StateDict = dict[str, "torch.Tensor"]


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
    """Where torch.hub keeps a downloaded checkpoint (the torchvision cache): torch's own answer
    once torch is imported (``torch.hub.set_dir`` may have moved it), else the same rule read from
    the environment (``$TORCH_HOME/hub``, ``$XDG_CACHE_HOME/torch/hub``, ``~/.cache/torch/hub``)."""
    if "torch" in sys.modules:
        hub = Path(sys.modules["torch"].hub.get_dir())
    else:
        cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
        hub = Path(os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"
    return hub / "checkpoints" / os.path.basename(url)


def url_source(label: str, url: str) -> WeightSource:
    def locate() -> Path | None:
        path = torch_hub_file(url)
        return path if path.is_file() else None

    def fetch() -> Path:
        check_reachable(url)
        path = torch_hub_file(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        import torch

        torch.hub.download_url_to_file(url, str(path), progress=True)
        return path

    return WeightSource(label, locate, fetch)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_sources(entry: Any) -> list[WeightSource]:
    """Where a registered backbone's ImageNet weights may be (its ``sources``, or its declared
    URL through the torch hub cache); [] when the plugin loads its own (``pretrained=True``)."""
    sources = entry.extras.get("sources")
    if callable(sources):
        return list(sources())
    url = entry.extras.get("weights", {}).get("imagenet")
    return [url_source(f"torch hub cache ({entry.name})", url)] if url else []


def local_weights(name: str) -> tuple[Path | None, list[str]] | None:
    """A backbone's ImageNet weights on this machine: (the file or None, where it looked), without
    downloading ([] where it knows of none); None when its plugin loads its own weights."""
    entry = registry("backbone").get(name)
    if not callable(entry.extras.get("sources")) and "imagenet" not in entry.extras.get("weights", {}):
        return None
    sources = weight_sources(entry)
    for source in sources:
        try:
            found = source.locate()
        except Exception:  # noqa: BLE001 - a cache that cannot be read counts as not there
            found = None
        if found is not None and Path(found).is_file():
            return Path(found), [source.label]
    return None, [s.label for s in sources]
