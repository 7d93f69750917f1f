"""Registries of named components, one per kind, each entry knowing the plugin that provided it.

A registration is checked against the plugin contract (``protocols.check_registration``) as it is
added; a component's old names (``aliases``) still resolve, with a one-line note naming the new one.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import functools
import importlib
import importlib.util
import inspect
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import PluginError, PluginWarning, UnknownComponentError
from .protocols import check_registration


class ContractError(PluginError):
    """A registration (or a built component) that breaks the plugin contract (``transferkit.protocols``):
    the plugin is left out with a one-line warning naming it, and the others keep working."""

    def __init__(self, provider: str, problem: str, verb: str = "registered") -> None:
        self.provider, self.problem, self.verb = provider, problem, verb
        super().__init__(f"plugin {provider!r} {verb} {problem}")


class OldNameWarning(PluginWarning):
    """A component asked for by a name its plugin has renamed (the old name still works)."""


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    name: str
    factory: Callable[..., Any]
    provider: str
    description: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def parameters(self) -> dict[str, str]:
        """The factory's keyword parameters with their defaults (``repr``; "" when required)."""
        return factory_parameters(self.factory)

    def describe(self) -> str:
        """The description with the parameters and defaults, as ``transferkit list`` shows it."""
        params = self.parameters()
        shown = ", ".join(f"{k}={v}" if v else k for k, v in params.items())
        described = f"{self.description} ({shown})" if shown else self.description
        return described + (f" [formerly {', '.join(self.aliases)}]" if self.aliases else "")


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


def is_lazy(factory: Any) -> bool:
    """A ``lazy_factory``, or a ``functools.partial`` of one (timm's thousands of models share one)."""
    return isinstance(factory, LazyFactory) or (isinstance(factory, functools.partial) and isinstance(factory.func, LazyFactory))


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
        self._aliases: dict[str, str] = {}  # old name -> the name it resolves to
        self._ambiguous: set[str] = set()  # old names two plugins claim: they resolve to neither

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        provider: str,
        description: str = "",
        aliases: Any = (),
        **extras: Any,
    ) -> None:
        problem = check_registration(self.kind, name, factory, extras, aliases, lazy=is_lazy(factory))
        if problem:
            raise ContractError(provider, problem)
        self.add_entry(Entry(name, factory, provider, description, dict(extras), tuple(aliases)))

    def add_entry(self, entry: Entry) -> None:
        """Add an entry that another registry already checked (a hook's, once the whole hook succeeded)."""
        name, provider = entry.name, entry.provider
        if name in self._entries:
            other = self._entries[name].provider
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin {provider!r};"
                f" uninstall or rename one of them"
            )
        self._entries[name] = entry
        self._aliases.pop(name, None)  # a name registered as itself wins over another's old name
        for alias in entry.aliases:
            self._add_alias(alias, name)

    def _add_alias(self, alias: str, name: str) -> None:
        """An old name resolves to ``name`` unless a component is registered under it, or another
        component claims it too (then it resolves to neither, whatever the plugins' order)."""
        if alias in self._entries or alias in self._ambiguous:
            return
        if alias in self._aliases and self._aliases[alias] != name:
            del self._aliases[alias]
            self._ambiguous.add(alias)
            return
        self._aliases[alias] = name

    def is_registered(self, name: object) -> bool:
        """Whether a component is registered under ``name`` itself (not as an old name)."""
        return name in self._entries

    def canonical(self, name: str) -> str:
        """The name ``name`` is registered under: itself, or the new name of an old one (no note)."""
        return self._aliases.get(name, name) if name not in self._entries else name

    def get(self, name: str) -> Entry:
        if name in self._entries:
            return self._entries[name]
        if name in self._aliases:
            entry = self._entries[self._aliases[name]]
            _note_old_name(self.kind, name, entry)
            return entry
        raise UnknownComponentError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        """The close matches, by full name or by the part after the prefix ("11crop" -> "averaging/10crop")."""
        by_text: dict[str, list[str]] = {}
        for registered in self._entries:
            for text in {registered, registered.rpartition("/")[2]}:
                by_text.setdefault(text, []).append(registered)
        matches = difflib.get_close_matches(name, list(by_text), n=5, cutoff=0.5)
        close = list(dict.fromkeys(n for text in matches for n in sorted(by_text[text])))[:5]
        hint = f"did you mean {', '.join(close)}?" if close else f"see `transferkit list {self.kind}s`"
        return f"unknown {self.kind} {name!r}; {hint}"

    def names(self, pattern: str | None = None) -> list[str]:
        names = sorted(self._entries)
        return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names

    def entries(self, pattern: str | None = None) -> list[Entry]:
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: object) -> bool:
        """Registered under ``name``, or renamed from it."""
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


_NOTED: set[tuple[str, str]] = set()  # (kind, old name) already noted in this process


def _note_old_name(kind: str, old: str, entry: Entry) -> None:
    """One line, once per process, when a component is asked for by its old name."""
    if (kind, old) in _NOTED:
        return
    _NOTED.add((kind, old))
    warnings.warn(
        OldNameWarning(f"{kind} {old!r} is now {entry.name!r} (plugin {entry.provider!r}); the old name still works,"
                       f" but write {entry.name!r} in recipes and code"),
        stacklevel=3,
    )
