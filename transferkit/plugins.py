"""The plugin manager: built-in defaults and entry-point plugins, loaded guarded, into registries.

The built-in components register through the same pluggy manager as third-party ones, so the
core is just the first set of plugins (as in pytest, tox and llm).
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import logging
import os
import warnings
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import Registry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
STRICT_ENV = "TRANSFERKIT_STRICT_PLUGINS"
# comma-separated entry-point or package names not to load (like pytest's "-p no:NAME"), or "*"
DISABLE_ENV = "TRANSFERKIT_DISABLE_PLUGINS"
# the built-in plugins and the one hook each implements: registered by name and imported when that
# hook first runs, so building the CLI (which asks only for commands) imports no torch or timm
BUILTIN_MODULES = {
    "transferkit.builtin.backbones": "register_backbones",
    "transferkit.builtin.datasets": "register_datasets",
    "transferkit.builtin.augmentations": "register_augmentations",
}
KINDS = ("backbone", "augmentation", "averager", "dataset", "tta", "command")
HOOK_OF_KIND = {kind: f"register_{kind}s" if kind != "tta" else "register_tta" for kind in KINDS}


@dataclass
class PluginInfo:
    """What ``transferkit plugins`` shows for one plugin."""

    name: str
    version: str
    hooks: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str = ""
    distribution: str = ""


class Plugins:
    """The loaded plugin manager, its registries, and the plugins that failed to load."""

    def __init__(self, strict: bool | None = None) -> None:
        self.strict = _strict_from_env() if strict is None else strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self._registries: dict[str, Registry] = {}
        for module_name, hook_name in BUILTIN_MODULES.items():
            self._add(_imported_on_call(module_name, hook_name), module_name, version=_own_version(), distribution="transferkit")
        self._load_entry_points()

    # -- loading -------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        disabled = _disabled_from_env()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else ""
            version = ep.dist.version if ep.dist is not None else ""
            if ep.name in self.info:
                continue  # the same distribution seen twice on sys.path
            if disabled & {"*", ep.name, dist}:
                self.info[ep.name] = PluginInfo(ep.name, version, [], f"disabled by {DISABLE_ENV}", "", dist)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the others down
                message = f"{type(exc).__name__}: {exc}"
                self.info[ep.name] = PluginInfo(ep.name, version, [], "failed", message, dist)
                if self.strict:
                    raise PluginError(
                        f"plugin {ep.name!r} ({dist}) failed to load: {message}; fix or uninstall it,"
                        f" or unset {STRICT_ENV}"
                    ) from exc
                warnings.warn(f"transferkit: plugin {ep.name!r} failed to load: {message}", stacklevel=2)
                continue
            self._add(plugin, ep.name, version=version, distribution=dist)

    def _add(self, plugin: Any, name: str, *, version: str, distribution: str) -> None:
        self.pm.register(plugin, name=name)
        hooks = [h.name for h in (self.pm.get_hookcallers(plugin) or [])]
        self.info[name] = PluginInfo(name, version, sorted(hooks), "ok", "", distribution)
        self._registries = {}

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register an in-process plugin (a module or object with hook implementations)."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        self._add(plugin, name, version="", distribution="(in-process)")
        return name

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.info.pop(name, None)
        self._registries = {}

    # -- registries ----------------------------------------------------------------------------
    def registry(self, kind: str) -> Registry:
        """The registry of one kind, filled on first use by calling that kind's hook of every plugin."""
        if kind not in self._registries:
            self._registries[kind] = self._collect(kind)
        return self._registries[kind]

    def _collect(self, kind: str) -> Registry:
        registry, hook_name = Registry(kind), HOOK_OF_KIND[kind]
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():  # in registration order: built-ins first
            register = partial(registry.add, provider=impl.plugin_name)
            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc
        return registry


_plugins: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin manager, loaded on first use."""
    global _plugins
    if _plugins is None:
        _plugins = Plugins()
    return _plugins


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register an in-process plugin object or module; returns the name it was registered under."""
    return get_plugins().register(plugin, name)


def registry(kind: str) -> Registry:
    return get_plugins().registry(kind)


def _strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _disabled_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _own_version() -> str:
    try:
        return metadata.version("transferkit")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def module_plugin(**hooks: Any) -> ModuleType:
    """Build a throwaway plugin module from hook functions (``transferkit.testing.plugin`` for
    tests and notebooks)."""
    module = ModuleType("transferkit_inprocess_plugin")
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookspecs.hookimpl(fn))
    return module


def _imported_on_call(module_name: str, hook_name: str) -> ModuleType:
    """A stand-in for a built-in plugin module that imports it when its hook is first called."""

    def hook(register: Any) -> None:
        getattr(importlib.import_module(module_name), hook_name)(register=register)

    hook.__name__ = hook_name
    stand_in = module_plugin(**{hook_name: hook})
    stand_in.__name__ = module_name
    return stand_in
