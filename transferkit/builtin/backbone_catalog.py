"""The names of timm's and torchvision's models and where their ImageNet weights live, cached on
disk per installed version: registering ~3,000 backbones then takes milliseconds instead of the
seconds that importing torch, timm and torchvision costs on every command (``list``,
``validate``). The first command after installing (or upgrading) timm or torchvision builds the
file; nothing in it depends on this machine but those versions.

The file is ``backbones-timm-<version>-torchvision-<version>.json`` in ``$TRANSFERKIT_CACHE_DIR``
(default ``$XDG_CACHE_HOME/transferkit``, else ``~/.cache/transferkit``); a folder that cannot be
written only means the facts are computed again next time.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

CACHE_ENV = "TRANSFERKIT_CACHE_DIR"
FORMAT = 1  # bumped when the file's layout changes


def cache_dir() -> Path:
    """Where transferkit keeps files it can always compute again."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "transferkit"


@dataclass(frozen=True)
class Catalog:
    """timm's model names (``timm_models``), its ``name.tag`` names for each set of weights
    (``timm_tags``), facts per timm name (``hf_hub_id``, ``url``, ``tag``: the default weights'
    tag) and torchvision's classification models with their default weights' ``url``."""

    timm_models: list[str]
    timm_tags: list[str]
    timm: dict[str, dict[str, str]]
    torchvision: dict[str, dict[str, str]]


def library_version(distribution: str) -> str:
    """An installed distribution's version (\"none\" when it is not installed), without importing it."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"


def catalog_file() -> Path:
    return cache_dir() / f"backbones-timm-{library_version('timm')}-torchvision-{library_version('torchvision')}.json"


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The cached facts, built (importing timm and torchvision) when the file is missing or stale."""
    path = catalog_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") == FORMAT:
            return Catalog(data["timm_models"], data["timm_tags"], data["timm"], data["torchvision"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = build_catalog()
    write_json(path, {"format": FORMAT, **found.__dict__})
    return found


def build_catalog() -> Catalog:
    """The facts, from timm and torchvision themselves."""
    import timm
    import torchvision

    def facts(cfg: Any) -> dict[str, str]:
        if cfg is None:
            return {}
        found = {key: getattr(cfg, key, None) for key in ("hf_hub_id", "url", "tag")}
        return {key: str(value) for key, value in found.items() if value}

    models = list(timm.list_models())
    tags = [name for name in timm.list_pretrained() if "." in name]
    timm_facts = {name: facts(timm.models.get_pretrained_cfg(name)) for name in models + tags}
    vision = {}
    for name in torchvision.models.list_models(module=torchvision.models):
        try:
            url = torchvision.models.get_model_weights(name).DEFAULT.url
        except (ValueError, AttributeError):  # a model without pretrained weights
            url = None
        vision[name] = {"url": url} if url else {}
    return Catalog(models, tags, timm_facts, vision)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically (a temporary file renamed over it), readable by all; silently not at all when
    the folder cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError:
        pass
