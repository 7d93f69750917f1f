"""Create and list registered components by name: backbones, augmentations, averagers, datasets.
A component's parameters and description: ``registry.Entry.parameters`` / ``describe``."""

from __future__ import annotations

from typing import Any

from .errors import PluginError
from .plugins import plugin_output, registry


def _build(kind: str, name: str, *args: Any, **params: Any) -> Any:
    entry = registry(kind).get(name)
    try:
        with plugin_output(entry.provider):
            return entry.factory(*args, **params)
    except TypeError as exc:
        allowed = ", ".join(entry.parameters()) or "none"
        raise PluginError(f"{kind} {name!r} (plugin {entry.provider!r}): {exc}; its parameters: {allowed}") from None
    except (ValueError, AssertionError) as exc:
        raise PluginError(f"{kind} {name!r} (plugin {entry.provider!r}) rejected its parameters: {exc}") from None


def create_augmentation(name: str, *, num_classes: int | None = None, **params: Any) -> Any:
    """An image-level augmentation (albumentations transform) or, with ``num_classes``, a
    batch-level one (``aug(images, targets) -> (images, targets)``)."""
    kind = registry("augmentation").get(name).extras.get("kind", "image")
    if kind == "batch":
        if num_classes is None:
            raise PluginError(f"augmentation {name!r} is batch-level: pass num_classes=")
        return _build("augmentation", name, num_classes, **params)
    return _build("augmentation", name, **params)


def create_averager(name: str, model: Any, **params: Any) -> Any:
    """A weight averager (EMA, SWA...) tracking ``model``."""
    averager = _build("averager", name, model, **params)
    for method in ("update", "state_dict", "load_state_dict"):
        if not callable(getattr(averager, method, None)):
            entry = registry("averager").get(name)
            raise PluginError(f"averager {name!r} (plugin {entry.provider!r}) has no {method}() method")
    return averager


def _names(kind: str, filter: str | None) -> list[str]:
    return registry(kind).names(filter)


def list_backbones(filter: str | None = None) -> list[str]:
    return _names("backbone", filter)


def list_augmentations(filter: str | None = None) -> list[str]:
    return _names("augmentation", filter)


def list_averagers(filter: str | None = None) -> list[str]:
    return _names("averager", filter)


def list_datasets(filter: str | None = None) -> list[str]:
    return _names("dataset", filter)
