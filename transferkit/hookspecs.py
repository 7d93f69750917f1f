"""The hooks a transferkit plugin may implement (docs/plugins.md has each with a worked example).

Every hook receives a ``register`` callable (as a keyword argument) bound to the calling plugin,
so each registered component knows which plugin provided it (the pattern of ``llm`` and tox).
A hook may register any number of components; a name another plugin registered is an error.
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT_NAME = "transferkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_backbones(register: Callable[..., None]) -> None:
    """Register backbones: ``register(name, factory, description="", weights={"imagenet": URL})``
    (``weights`` optional).

    ``factory(pretrained: bool = False, **params) -> nn.Module``; the module maps images
    ``[N, 3, H, W]`` to pooled features ``[N, num_features]`` and has an int ``num_features``.
    Optional attributes: ``stages`` (a list of modules from input to output), ``data_config``
    (``mean``, ``std``, ``input_size``, optionally ``crop_pct``, ``interpolation``) and
    ``adapt_state_dict(state)``. With ``weights={"imagenet": URL}`` transferkit fetches and loads
    the file itself (factory called with ``pretrained=False``); without it, ``weights =
    "imagenet"`` calls ``factory(pretrained=True)``.
    """


@hookspec
def register_augmentations(register: Callable[..., None]) -> None:
    """Register augmentations: ``register(name, factory, description="", kind="image")``.

    ``kind="image"``: ``factory(**params)`` returns an albumentations transform applied per image
    (uint8 HWC RGB) in the data loader, in training only. ``kind="batch"``:
    ``factory(num_classes, **params)`` returns a callable ``aug(images, targets) -> (images,
    targets)`` on normalised float images ``[N, 3, H, W]`` and float targets ``[N, C]``, with
    optional ``state_dict()`` / ``load_state_dict(state)`` for resuming its random stream.
    """


@hookspec
def register_averagers(register: Callable[..., None]) -> None:
    """Register weight averagers: ``register(name, factory, description="")``.

    ``factory(model, **params)`` returns an object with ``update(model)`` (after every optimizer
    step), ``module`` (the averaged model), ``state_dict()`` and ``load_state_dict(state)``;
    optionally ``epoch_end(model, epoch)`` and ``finalize(batches)`` (BatchNorm statistics).
    """


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Register dataset sources: ``register(name, factory, description="")``.

    ``factory(root: str | None, seed: int = 0, val_fraction: float = 0.1, **params) ->
    transferkit.DatasetSplits``: ``root`` is ``data.root``, ``seed`` the recipe's seed, ``params``
    the recipe's ``data.params``. A source that downloads may add ``check_root=fn``:
    ``fn(root) -> str | None``, a one-line reason why ``root`` must not be used (e.g. a folder of
    the user's own images), checked before a run writes anything and by ``validate``.
    """


@hookspec
def register_tta(register: Callable[..., None]) -> None:
    """Register test-time augmentation policies: ``register(name, factory, description="")``.

    ``factory(**params)`` returns an object with ``views(image, resize, size) -> list[array]``,
    called positionally: deterministic uint8 HWC views of one image at the evaluation geometry
    (``resize(image, shorter=None)``: the evaluation resize of the shorter side, or to
    ``shorter`` pixels; ``size``: the crop side). Predictions average over the views.
    """


@hookspec
def register_commands(register: Callable[..., None]) -> None:
    """Register CLI subcommands: ``register(name, configure, run=run, description="")``.

    ``configure(parser)`` adds arguments to an ``argparse`` parser; ``run(args) -> int`` runs the
    command (raise ``transferkit.TransferkitError`` for a one-line error).
    """
