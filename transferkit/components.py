"""Create and list registered components by name: backbones, augmentations, averagers, datasets,
TTA policies. A component's parameters and description: ``registry.Entry.parameters`` / ``describe``.

Every build goes through ``call_factory``, so its errors read the same for every kind, one line
naming the component and its plugin: a factory that does not take what the core passes it breaks
the contract (``protocols.check_factory``); parameters its signature does not take, and a
``ValueError`` the factory raises about them, are "rejected its parameters" (the recipe's to fix);
a ``TypeError`` raised inside the factory is a bug in the plugin (``PluginBugError``: the command
line prints its traceback above the line). What is built is then checked against its Protocol.
"""

from __future__ import annotations

import inspect
import re
import traceback
from pathlib import Path
from typing import Any

from .errors import PluginError
from .plugins import plugin_output, registry
from .protocols import check_built, check_factory
from .registry import ContractError, Entry

# "...got an unexpected keyword argument 'widht'" (also from a function the factory passed **params to)
_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


class PluginBugError(PluginError):
    """A plugin's factory failed inside its own code in a way no parameter explains (a
    ``TypeError`` of its own): the plugin's bug. ``__cause__`` is what it raised; the command line
    prints that traceback above this error's line (``traceback_above``)."""

    traceback_above = True


def label(kind: str, entry: Entry) -> str:
    """``backbone 'acme/net' (plugin 'acme')``: how every message names a component."""
    return f"{kind} {entry.name!r} (plugin {entry.provider!r})"


def call_factory(kind: str, entry: Entry, *args: Any, role: str | None = None, rejects: tuple[type, ...] = (), **params: Any) -> Any:
    """``entry.factory(*args, **params)`` with the plugin's prints on stderr. ``role`` is the
    contract it is held to (``kind`` unless e.g. "batch augmentation"); an exception of
    ``rejects`` (the factory's own check of a value) is reported as rejecting the parameters."""
    problem = check_factory(role or kind, entry.factory)  # a lazy factory's first chance (registration could not import it)
    if problem:
        raise ContractError(entry.provider, f"{kind} {entry.name!r} with {problem}")
    unbound = signature_rejects(entry.factory, args, params)
    if unbound is not None:
        raise PluginError(rejected(kind, entry, unbound)) from None
    try:
        with plugin_output(entry.provider):
            return entry.factory(*args, **params)
    except TypeError as exc:
        match = _UNEXPECTED.search(str(exc))
        if match and match.group(1) in params:  # a **params factory passed it on, and the callee refused it
            raise PluginError(rejected(kind, entry, exc)) from None
        raise PluginBugError(
            f"{label(kind, entry)} has a bug: its factory raised TypeError: {_first_line(exc)}{_where(exc)};"
            f" not a problem with the parameters: report it to the plugin's authors (its traceback is above)"
        ) from exc
    except rejects as exc:
        raise PluginError(f"{label(kind, entry)} rejected its parameters: {exc}") from None


def signature_rejects(factory: Any, args: tuple[Any, ...], params: dict[str, Any]) -> TypeError | None:
    """The ``TypeError`` of calling ``factory(*args, **params)``'s signature (an unexpected
    keyword, a missing argument), or None (also when the signature cannot be read)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **params)
    except TypeError as exc:
        return exc
    return None


def rejected(kind: str, entry: Entry, exc: BaseException) -> str:
    allowed = ", ".join(entry.parameters()) or "none"
    return f"{label(kind, entry)} rejected its parameters: {_first_line(exc)}; its parameters: {allowed}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _where(exc: BaseException) -> str:
    """`` (at net.py:12, in build)``: the innermost frame of the traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if len(frames) < 2:
        return ""
    last = frames[-1]
    return f" (at {Path(last.filename).name}:{last.lineno}, in {last.name})"


def _checked(kind: str, entry: Entry, built: Any, role: str | None = None) -> Any:
    problem = check_built(role or kind, built)
    if problem:
        raise PluginError(f"{label(kind, entry)} {problem}")
    return built


def create_augmentation(name: str, *, num_classes: int | None = None, **params: Any) -> Any:
    """An image-level augmentation (albumentations transform) or, with ``num_classes``, a
    batch-level one (``protocols.BatchAugmentation``)."""
    entry = registry("augmentation").get(name)
    rejects = (ValueError, AssertionError)
    if entry.extras.get("kind", "image") == "batch":
        if num_classes is None:
            raise PluginError(f"augmentation {name!r} is batch-level: pass num_classes=")
        built = call_factory("augmentation", entry, num_classes, role="batch augmentation", rejects=rejects, **params)
        return _checked("augmentation", entry, built, "batch augmentation")
    return call_factory("augmentation", entry, rejects=rejects, **params)


def create_averager(name: str, model: Any, **params: Any) -> Any:
    """A weight averager (EMA, SWA...) tracking ``model`` (``protocols.Averager``)."""
    entry = registry("averager").get(name)
    return _checked("averager", entry, call_factory("averager", entry, model, rejects=(ValueError, AssertionError), **params))


def create_tta(name: str, **params: Any) -> Any:
    """A test-time augmentation policy registered through ``register_tta`` (``protocols.TTAPolicy``)."""
    entry = registry("tta").get(name)
    return _checked("tta", entry, call_factory("tta", entry, rejects=(ValueError, AssertionError), **params))


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
