"""The hooks a transferkit plugin may implement (docs/plugins.md has each with a worked example).

Every hook receives a ``register`` callable (as a keyword argument) bound to the calling plugin,
so each registered component knows which plugin provided it (the pattern of ``llm`` and tox).
A hook may register any number of components; a name another plugin registered is an error. What
``register`` takes and what each component must be is ``transferkit.protocols`` (the typed
``Protocol``s), checked when a component registers and when it is first built; a hook whose name is
not one of these is refused, naming the closest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .protocols import Register

PROJECT_NAME = "transferkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_backbones(register: Register) -> None:
    """Register backbones: ``register(name, factory, description="", weights={"imagenet": URL})``
    (``weights`` optional; ``sources=fn`` for a list of weight sources instead).

    ``factory(pretrained: bool = False, **params)`` returns a ``protocols.Backbone``. With
    ``weights={"imagenet": URL}`` transferkit fetches and loads the file itself (factory called
    with ``pretrained=False``); without it, ``weights = "imagenet"`` calls ``factory(pretrained=True)``.
    """


@hookspec
def register_augmentations(register: Register) -> None:
    """Register augmentations: ``register(name, factory, description="", kind="image")``.

    ``kind="image"``: ``factory(**params)`` returns an albumentations transform applied per image
    (uint8 HWC RGB) in the data loader, in training only. ``kind="batch"``:
    ``factory(num_classes, **params)`` returns a ``protocols.BatchAugmentation``.
    """


@hookspec
def register_averagers(register: Register) -> None:
    """Register weight averagers: ``register(name, factory, description="")``;
    ``factory(model, **params)`` returns a ``protocols.Averager``."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset sources: ``register(name, factory, description="")``.

    ``factory(root: str | None, seed: int = 0, val_fraction: float = 0.1, **params) ->
    transferkit.DatasetSplits``: ``root`` is ``data.root``, ``seed`` the recipe's seed, ``params``
    the recipe's ``data.params``. A source that downloads may add ``check_root=fn``:
    ``fn(root) -> str | None``, a one-line reason why ``root`` must not be used (e.g. a folder of
    the user's own images), checked before a run writes anything and by ``validate``.
    """


@hookspec
def register_tta(register: Register) -> None:
    """Register test-time augmentation policies: ``register(name, factory, description="")``;
    ``factory(**params)`` returns a ``protocols.TTAPolicy``."""


@hookspec
def register_commands(register: Register) -> None:
    """Register CLI subcommands: ``register(name, configure, run=run, description="")``.

    ``configure(parser)`` adds arguments to an ``argparse`` parser; ``run(args) -> int`` runs the
    command (raise ``transferkit.TransferkitError`` for a one-line error).
    """
