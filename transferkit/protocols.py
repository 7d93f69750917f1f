"""The plugin contract in one place: what ``register`` takes, and what each kind of component is.

The ``Protocol``s are public (``transferkit.Backbone``, ``BatchAugmentation``, ``Averager``,
``TTAPolicy``, ``Register``): a plugin's classes conform by their shape, with no base class, and a
type checker can hold them to it. transferkit checks the contract itself in two places:

- when a component registers (``check_registration``): its name, the keywords given to
  ``register`` and, when the factory is already imported, that it takes what the core passes it
  (``pretrained``; a batch augmentation's ``num_classes``; an averager's ``model``; a dataset's
  ``root``, ``seed`` and ``val_fraction``). A ``lazy_factory`` is imported only when first built,
  so its signature is checked then (``check_factory``), keeping ``import transferkit``, ``--help``
  and ``transferkit list`` free of torch;
- when a component is first built (``check_built``): the object against its Protocol.

Each check returns a problem in words (or None); the caller names the component and its plugin.
Nothing here imports torch: the annotations are strings.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # for type checkers only: the contract is read without importing torch
    import numpy as np
    import torch
    from torch import nn


class Register(Protocol):
    """The ``register`` callable a hook receives (bound to the plugin that implements the hook).

    ``register(name, factory, description="", aliases=(), **extras)``: ``name`` is prefixed with
    the plugin's own (``"acme/tinyconvnet"``); ``aliases`` are old names that keep working, with a
    one-line note; the extras each kind takes are in ``EXTRAS``."""

    def __call__(
        self, name: str, factory: Callable[..., Any], *, description: str = "", aliases: Sequence[str] = (), **extras: Any
    ) -> None: ...


@runtime_checkable
class Backbone(Protocol):
    """What ``register_backbones``' ``factory(pretrained: bool = False, **params)`` returns: an
    ``nn.Module`` mapping images ``[N, 3, H, W]`` to pooled features ``[N, num_features]``.

    Optional: ``stages`` (a list, tuple or ``nn.ModuleList`` of modules from input to output, an
    attribute or a property: ``unfreeze = "last:K"`` and per-stage learning rates use it; an
    ``nn.Sequential`` is read as the network's body and opened, with the modules around it);
    ``data_config`` (``mean``, ``std``, ``input_size``, optionally ``crop_pct`` and
    ``interpolation``; ImageNet's at 224 px where absent); ``adapt_state_dict(state)`` to read
    checkpoints in another layout."""

    num_features: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class BatchAugmentation(Protocol):
    """What a ``kind="batch"`` augmentation's ``factory(num_classes, **params)`` returns: called in
    each training step on normalised float images ``[N, 3, H, W]`` and float targets ``[N, C]``
    (one-hot or soft), returning new tensors of the same shapes and dtypes. Optional:
    ``state_dict()`` / ``load_state_dict(state)`` for its random generator, so a resumed run
    continues the same random stream."""

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class Averager(Protocol):
    """What ``register_averagers``' ``factory(model, **params)`` returns: ``update(model)`` after
    every optimizer step of the phase it averages, ``module`` (the averaged model, evaluated beside
    the raw one and exported), ``state_dict()`` / ``load_state_dict(state)`` for checkpoints.
    Optional: ``epoch_end(model, epoch)``, and ``finalize(batches)``, called only when BatchNorm
    trains, with the training images, to recompute BatchNorm statistics."""

    module: nn.Module

    def update(self, model: nn.Module) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


Resize = Callable[..., "np.ndarray"]  # resize(image, shorter=None): the evaluation resize of the shorter side


@runtime_checkable
class TTAPolicy(Protocol):
    """What ``register_tta``'s ``factory(**params)`` returns. ``views(image, resize, size)`` is
    called positionally with a uint8 HWC image, ``resize(image, shorter=None)`` (the evaluation
    resize of the shorter side, or to ``shorter`` pixels) and the crop side; it returns
    deterministic uint8 HWC views of ``size`` x ``size``, whose class probabilities are averaged."""

    def views(self, image: np.ndarray, resize: Resize, size: int) -> list[np.ndarray]: ...


# what each kind's factory builds, checked when it is first built
PROTOCOL_OF_KIND: dict[str, Any] = {"backbone": Backbone, "averager": Averager, "tta": TTAPolicy}
# the keywords ``register`` takes beyond ``description`` and ``aliases``, per kind
EXTRAS: dict[str, frozenset[str]] = {
    "backbone": frozenset({"weights", "sources"}),
    "augmentation": frozenset({"kind"}),
    "averager": frozenset(),
    "dataset": frozenset({"check_root"}),
    "tta": frozenset(),
    "command": frozenset({"run"}),
}
AUGMENTATION_KINDS = ("image", "batch")
# the factory calls each kind's contract promises, as (positional, keyword) stand-ins for a signature check
CORE_ARGUMENTS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "backbone": ((), {"pretrained": False}),
    "batch augmentation": ((3,), {}),  # num_classes
    "averager": ((None,), {}),  # model
    "dataset": ((None,), {"seed": 0, "val_fraction": 0.1}),  # root
    "command": ((None,), {}),  # configure(parser)
}
CONTRACT_OF_KIND = {
    "backbone": "factory(pretrained: bool = False, **params)",
    "batch augmentation": "factory(num_classes, **params)",
    "averager": "factory(model, **params)",
    "dataset": "factory(root, seed=0, val_fraction=0.1, **params)",
    "command": "configure(parser)",
}


def factory_role(kind: str, extras: Mapping[str, Any]) -> str:
    """``kind``, or "batch augmentation" for an augmentation registered with ``kind="batch"``."""
    return "batch augmentation" if kind == "augmentation" and extras.get("kind") == "batch" else kind


def check_registration(
    kind: str, name: Any, factory: Any, extras: Mapping[str, Any], aliases: Any = (), *, lazy: bool = False
) -> str | None:
    """What is wrong with ``register(name, factory, **extras)`` for ``kind``, in words, or None.
    A ``lazy`` factory's signature waits for its first build (``check_factory``)."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        return f"a {kind} with the name {name!r}: a name is a non-empty string without surrounding spaces"
    if isinstance(aliases, str) or not all(isinstance(a, str) and a.strip() for a in aliases):
        return f"{kind} {name!r} with aliases={aliases!r}: a list of old names (strings)"
    unknown = sorted(set(extras) - EXTRAS[kind])
    if unknown:
        takes = ", ".join(["description", "aliases", *sorted(EXTRAS[kind])])
        return f"{kind} {name!r} with {', '.join(map(repr, unknown))}, which register does not take for a {kind} (it takes {takes})"
    if not callable(factory):
        return f"{kind} {name!r} with a factory that is not callable"
    problem = _extras_problem(kind, extras)
    if problem:
        return f"{kind} {name!r} with {problem}"
    problem = None if lazy else check_factory(factory_role(kind, extras), factory)
    return f"{kind} {name!r} with {problem}" if problem else None


def _extras_problem(kind: str, extras: Mapping[str, Any]) -> str | None:
    if kind == "augmentation" and extras.get("kind", "image") not in AUGMENTATION_KINDS:
        return f"kind={extras['kind']!r} (an augmentation is kind=\"image\" or kind=\"batch\")"
    if kind == "backbone" and "weights" in extras:
        weights = extras["weights"]
        if not isinstance(weights, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in weights.items()):
            return f"weights={weights!r} (a dict of URLs, e.g. {{\"imagenet\": URL}})"
    for key in ("sources", "check_root", "run"):
        if key in extras and not callable(extras[key]):
            return f"{key}={extras[key]!r}, which is not callable"
    if kind == "command" and "run" not in extras:
        return "no run= (a command is register(name, configure, run=run))"
    return None


def check_factory(role: str, factory: Any) -> str | None:
    """Whether ``factory`` takes the arguments the core passes a ``role`` ("backbone", "batch
    augmentation", ...), in words, or None (also when its signature cannot be read)."""
    if role not in CORE_ARGUMENTS:
        return None
    key = _signature_key(factory)
    if key is None:
        return _check_factory(role, factory)
    if (role, key) not in _CHECKED:  # timm's ~3000 partials of one function: one signature to read
        _CHECKED[(role, key)] = _check_factory(role, factory)
    return _CHECKED[(role, key)]


def _check_factory(role: str, factory: Any) -> str | None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    args, kwargs = CORE_ARGUMENTS[role]
    try:
        signature.bind_partial(*args, **kwargs)
    except TypeError as exc:
        return f"a factory that cannot be called as {CONTRACT_OF_KIND[role]} ({exc})"
    return None


def _signature_key(factory: Any) -> Any:
    """What a factory's signature depends on, when that can be a cache key: a ``functools.partial``
    by its function and the names it binds; a plain function by itself."""
    if isinstance(factory, functools.partial) and inspect.isfunction(factory.func):
        return (factory.func, len(factory.args), tuple(sorted(factory.keywords)))
    return factory if inspect.isfunction(factory) else None


_CHECKED: dict[tuple[str, Any], str | None] = {}


def missing_members(obj: Any, protocol: Any) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks (methods must be callable)."""
    missing = []
    for member in protocol_members(protocol):
        value = getattr(obj, member, _ABSENT)
        wants_method = callable(getattr(protocol, member, None))
        if value is _ABSENT or (wants_method and not callable(value)):
            missing.append(f"{member}()" if wants_method and member != "__call__" else member)
    return missing


def protocol_members(protocol: Any) -> list[str]:
    """A Protocol's own members, attributes then methods, as declared."""
    own = [n for n in vars(protocol) if not n.startswith("_") or n == "__call__"]
    methods = [n for n in own if callable(vars(protocol)[n])]
    return list(getattr(protocol, "__annotations__", {})) + methods


def check_built(kind: str, obj: Any) -> str | None:
    """What is wrong with a built component against its kind's Protocol, in words, or None."""
    if kind == "batch augmentation":
        if not callable(obj):
            return f"returned {type(obj).__name__}, which is not callable as aug(images, targets)"
        if callable(getattr(obj, "state_dict", None)) != callable(getattr(obj, "load_state_dict", None)):
            return "has only one of state_dict() and load_state_dict() (a resumed run needs both, or neither)"
        return None
    protocol = PROTOCOL_OF_KIND.get(kind)
    if protocol is None:
        return None
    missing = missing_members(obj, protocol)
    if missing:
        return f"returned {type(obj).__name__}, which has no {', '.join(missing)} (see transferkit.{protocol.__name__})"
    return None


_ABSENT = object()
