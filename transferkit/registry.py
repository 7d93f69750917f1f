"""Registries of named components, one per kind, each entry knowing the plugin that provided it."""

from __future__ import annotations

import ast
import difflib
import fnmatch
import functools
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import PluginError, UnknownComponentError


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    name: str
    factory: Callable[..., Any]
    provider: str
    description: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def parameters(self) -> dict[str, str]:
        """The factory's keyword parameters with their defaults (``repr``; "" when required)."""
        return factory_parameters(self.factory)

    def describe(self) -> str:
        """The description with the parameters and defaults, as ``transferkit list`` shows it."""
        params = self.parameters()
        shown = ", ".join(f"{k}={v}" if v else k for k, v in params.items())
        return f"{self.description} ({shown})" if shown else self.description


class LazyFactory:
    """A factory named ``"package.module:name"``, imported on its first call (or when its signature
    is read, for ``transferkit list`` and recipe checks): a plugin registers it from a hook without
    importing torch or albumentations, so commands that do not build it stay fast.
    ``inspect.signature`` sees the real factory's (through ``__wrapped__``)."""

    def __init__(self, target: str) -> None:
        module, sep, name = target.partition(":")
        if not sep or not module or not name:
            raise ValueError(f"lazy_factory({target!r}): expected 'package.module:name'")
        self.target, self._module, self.__name__, self.__qualname__ = target, module, name, name

    def load(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self._module), self.__name__)

    def source_parameters(self) -> dict[str, str] | None:
        """``factory_parameters`` read from the module's source (``ast``) without importing it, for
        ``transferkit list``; None where the source cannot say (then the module is imported)."""
        if self._module in sys.modules:
            return None
        tree = _module_source(self._module)
        node = next((n for n in (tree.body if tree else []) if getattr(n, "name", None) == self.__name__), None)
        if isinstance(node, ast.ClassDef):
            if not node.bases and not any(getattr(n, "name", None) == "__init__" for n in node.body):
                return {}  # a plain class without __init__: no parameters
            node = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return None
        args = node.args
        positional = args.posonlyargs + args.args
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        pairs = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
        return {a.arg: _default_text(d) for a, d in pairs if a.arg not in _CORE_PARAMETERS}

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self.load()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"lazy_factory({self.target!r})"


@functools.lru_cache(maxsize=64)
def _module_source(module: str) -> ast.Module | None:
    """A module's parsed source, once per module (thousands of lazy factories share a few)."""
    try:
        spec = importlib.util.find_spec(module)
        return ast.parse(Path(spec.origin).read_text(encoding="utf-8")) if spec and spec.origin else None
    except (ImportError, OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None


def _default_text(node: ast.expr | None) -> str:
    """A default as ``repr`` shows it once imported; a named constant as its name in the source."""
    if node is None:
        return ""
    try:
        return repr(ast.literal_eval(node))
    except ValueError:
        return ast.unparse(node)


def lazy_factory(target: str) -> LazyFactory:
    """``lazy_factory("my_plugin.models:my_net")``: register it as the factory; ``my_plugin.models``
    is imported when the component is first built (see ``LazyFactory``)."""
    return LazyFactory(target)


# parameters the core passes itself, not set in a recipe
_CORE_PARAMETERS = {"pretrained", "model", "num_classes", "root", "self"}


def factory_parameters(factory: Callable[..., Any]) -> dict[str, str]:
    """A factory's keyword parameters with their defaults, for listings and error messages (a lazy
    factory's from its source while its module is not imported)."""
    from_source = factory.source_parameters() if isinstance(factory, LazyFactory) else None
    if from_source is not None:
        return from_source
    if isinstance(factory, functools.partial) and isinstance(factory.func, LazyFactory):  # partial(lazy, name)
        from_source = factory.func.source_parameters()
        if from_source is not None:  # the bound leading positional names and keywords are not parameters
            bound = set(list(from_source)[: len(factory.args)]) | set(factory.keywords)
            return {k: v for k, v in from_source.items() if k not in bound}
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    out = {}
    for p in sig.parameters.values():
        if p.name in _CORE_PARAMETERS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[p.name] = "" if p.default is inspect.Parameter.empty else repr(p.default)
    return out


class Registry:
    """Name -> Entry for one kind of component: backbone, augmentation, averager, dataset, tta or
    command (``plugins.KINDS``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        provider: str,
        description: str = "",
        **extras: Any,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {provider!r} registered a {self.kind} with an empty or non-string name")
        if not callable(factory):
            raise PluginError(f"plugin {provider!r} registered {self.kind} {name!r} with a factory that is not callable")
        if name in self._entries:
            other = self._entries[name].provider
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin {provider!r};"
                f" uninstall or rename one of them"
            )
        self._entries[name] = Entry(name, factory, provider, description, dict(extras))

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"see `transferkit list {self.kind}s`"
        return f"unknown {self.kind} {name!r}; {hint}"

    def names(self, pattern: str | None = None) -> list[str]:
        names = sorted(self._entries)
        return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names

    def entries(self, pattern: str | None = None) -> list[Entry]:
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
