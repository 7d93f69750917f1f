"""The plugin manager: built-in defaults and entry-point plugins, loaded guarded, into registries.

The built-in components register through the same pluggy manager as third-party ones, so the
core is just the first set of plugins (as in pytest, tox and llm).

A plugin cannot take the tool down: one that fails to import (any ``BaseException``:
``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit`` included), takes longer than the time
limit to import or to run a hook (``plugin_guard``), whose hooks do not match the hook
specifications (a hook name transferkit does not know is named with the closest one, rather than
accepted and never called), whose hook raises (its own ``PluginError`` too) or registers a
component that breaks the contract (``protocols``) is left out, named with the reason and
``TRANSFERKIT_DISABLE_PLUGINS`` in a one-line warning, and the others keep working
(``TRANSFERKIT_STRICT_PLUGINS=1`` makes any of these fatal). What a plugin prints while it is
imported or its hooks run goes to stderr. A name registered twice stays an error naming both.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata as metadata
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, PluginWarning
from .plugin_guard import PluginTimeout, plugin_code
from .registry import ContractError, Registry

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
# what a plugin may raise and still be contained: any BaseException (sys.exit, KeyboardInterrupt,
# GeneratorExit or its own subclass at import), so one plugin cannot end every command
CONTAINED = (BaseException,)


class RegistrationError(PluginError):
    """A name taken by another plugin: an error naming both plugins, not a plugin to leave out
    quietly (a registration that breaks the contract is a ``ContractError``: its plugin is left out)."""


class UnknownHookError(PluginError):
    """A plugin implements a hook transferkit does not have (a misspelling: it would never be called)."""


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
                with plugin_code(ep.name, "import"):
                    plugin = ep.load()
            except CONTAINED as exc:  # a broken plugin must not take the others down
                self._failed(ep.name, version, dist, f"failed to load: {_describe(exc)}", _describe(exc), exc)
                continue
            try:
                self._add(plugin, ep.name, version=version, distribution=dist)
            except (pluggy.PluginValidationError, UnknownHookError) as exc:  # a hook not as transferkit's spec
                reason = _mismatch(exc)
                self._failed(ep.name, version, dist, reason, reason, exc)

    def _failed(self, name: str, version: str, dist: str, reason: str, error: str, exc: BaseException, status: str = "failed") -> None:
        """Record plugin ``name`` as left out (``error`` is what ``transferkit plugins`` shows) and
        warn in one line; fatal under TRANSFERKIT_STRICT_PLUGINS."""
        self.info[name] = PluginInfo(name, version, [], status, error, dist)
        package = dist.strip("()") or "in-process"  # an in-process plugin's distribution is "(in-process)"
        if self.strict:
            raise PluginError(f"plugin {name!r} ({package}) {reason}; fix or uninstall it, or unset {STRICT_ENV}") from exc
        warnings.warn(
            PluginWarning(f"plugin {name!r} ({package}) {reason}; it is left out and the others still work;"
                          f" fix or uninstall it, or skip it with {DISABLE_ENV}={name}"),
            stacklevel=3,
        )

    def _add(self, plugin: Any, name: str, *, version: str, distribution: str) -> None:
        self.pm.register(plugin, name=name)
        callers = self.pm.get_hookcallers(plugin) or []
        unknown = sorted(h.name for h in callers if not h.has_spec())
        if unknown:  # pluggy keeps a hook without a spec and never calls it: refuse the plugin instead
            self.pm.unregister(plugin)
            raise UnknownHookError(f"has a hook transferkit does not know: {', '.join(_closest_hook(h) for h in unknown)}")
        hooks = [h.name for h in callers]
        unmarked = _unmarked_hooks(plugin, hooks)
        if unmarked:  # pluggy registers only marked functions: this one would never be called
            self.pm.unregister(plugin)
            raise UnknownHookError(f"has a function transferkit never calls: {', '.join(unmarked)} without @transferkit.hookimpl"
                                   " (decorate it)")
        self.info[name] = PluginInfo(name, version, sorted(hooks), "ok", "", distribution)
        self._registries = {}

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register an in-process plugin (a module or object with hook implementations); one whose
        hooks are not transferkit's is refused with a ``PluginError`` naming it."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        try:
            self._add(plugin, name, version="", distribution="(in-process)")
        except (pluggy.PluginValidationError, UnknownHookError) as exc:
            raise PluginError(f"plugin {name!r} (in-process) {_mismatch(exc)}") from None
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
        """Call every plugin's hook for ``kind``; a plugin whose hook raises (or cannot be called)
        is disabled, named in a warning, and the registry is filled without it."""
        registry, hook_name = Registry(kind), HOOK_OF_KIND[kind]
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():  # in registration order: built-ins first
            staged = Registry(kind)  # the hook's registrations count only when the whole hook succeeds
            register = partial(_register_checked, registry, staged, provider=impl.plugin_name)
            try:
                with _guarded(impl.plugin_name, hook_name):
                    impl.function(register=register)
            except RegistrationError:
                raise
            except CONTAINED as exc:
                if self.strict or impl.plugin_name in BUILTIN_MODULES:
                    raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: {_describe(exc)}") from exc
                self._disable(impl.plugin_name, _hook_failure(hook_name, exc), exc)
                continue
            for entry in staged.entries():
                registry.add_entry(entry)
        return registry

    def check_hooks(self) -> None:
        """Call every installed plugin's hooks once (built-ins aside: they are transferkit's own),
        so that ``transferkit plugins`` shows the ones whose hooks fail, or register what breaks the
        contract, as disabled. Never raises."""
        strict, self.strict = self.strict, False
        try:
            for kind, hook_name in HOOK_OF_KIND.items():
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin_name in BUILTIN_MODULES or impl.plugin_name not in self.info:
                        continue
                    scratch = Registry(kind)  # the contract is checked; nothing is kept
                    try:
                        with _guarded(impl.plugin_name, hook_name):
                            impl.function(register=partial(scratch.add, provider=impl.plugin_name))
                    except CONTAINED as exc:
                        self._disable(impl.plugin_name, _hook_failure(hook_name, exc), exc)
        finally:
            self.strict = strict

    def disable(self, name: str, error: str, exc: BaseException) -> None:
        """Leave out plugin ``name`` (e.g. its command failed to configure), with a one-line warning."""
        self._disable(name, error, exc)

    def _disable(self, name: str, error: str, exc: BaseException) -> None:
        """Take a plugin whose hook failed out of the manager (and of every registry built so far)."""
        info = self.info.get(name)
        self.pm.unregister(name=name)
        self._registries = {}
        version, dist = (info.version, info.distribution) if info else ("", "")
        self._failed(name, version, dist, f"was disabled: {error}", error, exc, status="disabled")


def _register_checked(final: Registry, staged: Registry, name: str, factory: Any, *, provider: str, **kwargs: Any) -> None:
    """``register`` as a hook sees it (``protocols.Register``): a registration that breaks the
    contract raises ``ContractError`` (its plugin is left out); a name another plugin took is an
    error at once (naming both)."""
    try:
        staged.add(name, factory, provider=provider, **kwargs)
        if final.is_registered(name):
            final.add(name, factory, provider=provider, **kwargs)  # raises, naming both plugins
    except ContractError:
        raise
    except PluginError as exc:
        raise RegistrationError(str(exc)) from None


def _unmarked_hooks(plugin: Any, registered: list[str]) -> list[str]:
    """The functions of ``plugin`` named like a hook (``register_...``) that are not marked with
    ``@transferkit.hookimpl``, so pluggy skips them without a word."""
    marker = f"{hookspecs.PROJECT_NAME}_impl"
    names = [n for n in dir(plugin) if n.startswith("register_") and n not in registered]
    return sorted(n for n in names if callable(getattr(plugin, n, None)) and not hasattr(getattr(plugin, n), marker))


def _closest_hook(name: str) -> str:
    """``register_backbone`` -> "register_backbone (did you mean register_backbones?)"."""
    close = difflib.get_close_matches(name, list(HOOK_OF_KIND.values()), n=1, cutoff=0.6)
    return f"{name} (did you mean {close[0]}?)" if close else f"{name} (transferkit's hooks: {', '.join(HOOK_OF_KIND.values())})"


def _mismatch(exc: BaseException) -> str:
    """Why a plugin's hooks were refused, on one line."""
    if isinstance(exc, UnknownHookError):
        return str(exc)
    detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"has a hook that does not match transferkit's: {detail}"


def plugin_output(provider: str) -> Any:
    """Around a plugin's own code that builds a component (a factory call, the import of a lazy
    factory's module): what it prints goes to stderr, out of a command's output."""
    return contextlib.nullcontext() if provider in BUILTIN_MODULES else contextlib.redirect_stdout(sys.stderr)


def _guarded(plugin: str, hook_name: str) -> Any:
    """A hook of an installed plugin runs under ``plugin_code`` (time limit, stdout to stderr);
    transferkit's own built-ins (their first call imports timm and torch) run as they are."""
    return contextlib.nullcontext() if plugin in BUILTIN_MODULES else plugin_code(plugin, f"{hook_name} hook")


def _hook_failure(hook_name: str, exc: BaseException) -> str:
    """What went wrong in a plugin's hook, for the one-line warning."""
    if isinstance(exc, ContractError):
        return f"its {hook_name} hook {exc.verb} {exc.problem}"
    return f"its {hook_name} hook raised {_describe(exc)}"


def describe_exception(exc: BaseException) -> str:
    """One line for what a plugin raised (``SystemExit`` and ``KeyboardInterrupt`` said in words)."""
    return _describe(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) (it called sys.exit)"
    if isinstance(exc, KeyboardInterrupt):
        return "KeyboardInterrupt (raised by the plugin)"
    if isinstance(exc, PluginTimeout):
        return _first_line(exc)
    message = _first_line(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


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
