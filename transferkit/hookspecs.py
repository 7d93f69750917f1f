"""The hooks a transferkit plugin may implement.

Every hook receives a ``register`` callable bound to the calling plugin, so each registered
component knows which plugin provided it (the pattern of ``llm`` and tox).
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT_NAME = "transferkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_backbones(register: Callable[..., None]) -> None:
    """Register backbones: ``register(name, factory, description="")``.

    ``factory(pretrained: bool = False, **params) -> nn.Module``; the module maps images
    ``[N, 3, H, W]`` to pooled features ``[N, num_features]`` and has an int ``num_features``.
    Optional attributes: ``stages`` (modules from input to output) and ``data_config``
    (``mean``, ``std``, ``input_size``).
    """


@hookspec
def register_augmentations(register: Callable[..., None]) -> None:
    """Register augmentations: ``register(name, factory, description="", kind="image")``.

    ``kind="image"``: ``factory(**params)`` returns an albumentations transform applied per image
    in the data loader. ``kind="batch"``: ``factory(num_classes, **params)`` returns a callable
    ``aug(images, targets) -> (images, targets)`` with float targets ``[N, C]``.
    """


@hookspec
def register_averagers(register: Callable[..., None]) -> None:
    """Register weight averagers: ``register(name, factory, description="")``.

    ``factory(model, **params)`` returns an object with ``update(model)``, ``module``,
    ``state_dict()`` and ``load_state_dict(state)``.
    """


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Register dataset sources: ``register(name, factory, description="")``.

    ``factory(root: str | None, **params) -> DatasetSplits`` (see ``transferkit.data``).
    """


@hookspec
def register_tta(register: Callable[..., None]) -> None:
    """Register test-time augmentation policies: ``register(name, factory, description="")``.

    ``factory(**params)`` returns an object with ``views(image, resize, size) -> list[array]``:
    deterministic uint8 HWC views of one image at the evaluation geometry (``resize``: shorter
    side before the centre crop; ``size``: the crop). Predictions average over the views.
    """


@hookspec
def register_commands(register: Callable[..., None]) -> None:
    """Register CLI subcommands: ``register(name, configure, run=run, description="")``.

    ``configure(parser)`` adds arguments to an ``argparse`` parser; ``run(args) -> int`` runs the
    command (raise ``transferkit.TransferkitError`` for a one-line error).
    """
