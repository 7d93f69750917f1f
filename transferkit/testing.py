"""Helpers for testing transferkit plugins (and transferkit itself), on generated images in
seconds and without a network: a tiny backbone, in-process plugins registered for one test,
image folders, a tiny recipe and a finished tiny run, and one-call conformance checks of a
registered component (``check_backbone``, ``check_image_augmentation``, ``check_batch_augmentation``,
``check_averager``, ``check_tta``): built as a run builds it, then used as a run uses it.

A public submodule for tests: ``from transferkit.testing import ...``. It needs pytest for the
fixtures, which is why ``import transferkit`` does not import it. The fixtures (``tiny_backbone``,
``image_folder``, ``tiny_recipe``, ``tiny_run``) are used by importing them into a ``conftest.py``
or a test module::

    from transferkit.testing import image_folder, tiny_backbone, tiny_recipe, tiny_run  # noqa: F401
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pytest
import tomli_w
import torch
from PIL import Image
from torch import nn

import transferkit

from .cli import main
from .data.preprocessing import Preprocessing
from .data.transforms import train_transform
from .models.backbone import backbone_stages, create_backbone, data_config, probe_features
from .plugins import module_plugin, registry

TINY_BACKBONE = "tiny/cnn"
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}
TINY_SPLITS = {"train": 12, "test": 4}  # images per class


class TinyCNN(nn.Module):
    """conv-BN-ReLU x2 + global pool: a real backbone with BatchNorm and two stages, small enough
    for a whole run in seconds on a CPU."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 2 * width
        self.stages = [self.stem, self.stage1]
        self.data_config = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "input_size": (3, 32, 32)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stage1(self.stem(x))).flatten(1)


def tiny_cnn(pretrained: bool = False, width: int = 8) -> TinyCNN:
    """The backbone factory of ``TinyCNN`` (it has no pretrained weights)."""
    return TinyCNN(width)


# -- how transferkit sees a backbone ---------------------------------------------------------------
def stages_of(backbone: nn.Module) -> list[nn.Module]:
    """The stages transferkit unfreezes for ``unfreeze = "last:K"`` (the declared ``stages``, or
    its split of the top-level children), input to output."""
    return backbone_stages(backbone)


def data_config_of(backbone: nn.Module) -> dict[str, Any]:
    """The backbone's ``data_config`` as transferkit reads it: ImageNet's values where it has none."""
    return data_config(backbone)


# -- conformance: one call per kind, as a run builds and uses the component ---------------------
def _fail(kind: str, name: str, problem: str) -> AssertionError:
    provider = registry(kind).get(name).provider
    return AssertionError(f"{kind} {name!r} (plugin {provider!r}) {problem}")


def check_backbone(name: str, input_size: tuple[int, int, int] | None = None, **params: Any) -> nn.Module:
    """Build backbone ``name`` with ``params`` and no weights, as a run does (the contract checked:
    ``transferkit.Backbone``), then check pooled features ``[N, num_features]`` at its input size
    (at most 64 px, as a run's probe; or ``input_size``), stages that are modules with parameters
    covering every parameter once, its ``data_config``, and the same module again from the same
    parameters (what ``evaluate`` rebuilds). Returns the backbone; raises naming what is wrong."""
    module = create_backbone(name, weights="none", **params)
    config = data_config(module)
    if len(config["mean"]) != 3 or len(config["std"]) != 3 or len(config["input_size"]) != 3:
        raise _fail("backbone", name, f"has a data_config without 3 means, 3 stds and input_size (C, H, W): {config}")
    side = tuple(min(int(v), 64) for v in config["input_size"][1:])
    probe_features(module, name, input_size or (3, *side))
    stages = backbone_stages(module)
    seen: dict[int, int] = {}
    for i, stage in enumerate(stages):
        for p in stage.parameters():
            if id(p) in seen:
                raise _fail("backbone", name, f"has stages {seen[id(p)]} and {i} sharing parameters: each belongs to one stage")
            seen[id(p)] = i
    left = [n for n, p in module.named_parameters() if id(p) not in seen]
    if not stages or left:
        raise _fail("backbone", name, f"has stages that leave out {len(left)} parameters (e.g. {left[:2]}):"
                                      ' unfreeze = "last:K" could never train them; put their modules in a stage')
    again = create_backbone(name, weights="none", **params)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if shapes != {k: tuple(v.shape) for k, v in again.state_dict().items()}:
        raise _fail("backbone", name, "built a different module from the same parameters: a run's model could not be loaded again")
    return module


def check_image_augmentation(name: str, **params: Any) -> Any:
    """Build image augmentation ``name`` and run it in the training pipeline on a uint8 image:
    the same output for the same seed (it draws only from its own generators). Returns it."""
    aug = transferkit.create_augmentation(name, **params)
    image = np.random.default_rng(0).integers(0, 256, (45, 37, 3), dtype=np.uint8)
    pipeline = train_transform({"mean": (0.5,) * 3, "std": (0.25,) * 3, "input_size": (3, 32, 32)}, 32, image_augs=[aug])
    outputs = []
    for _ in range(2):
        pipeline.set_seed(7)
        outputs.append(pipeline(image))
    if outputs[0].shape != (3, 32, 32) or not torch.equal(*outputs):
        raise _fail("augmentation", name, "gave another image for the same seed: draw only from self.py_random / self.random_generator")
    return aug


def check_batch_augmentation(name: str, num_classes: int = 3, **params: Any) -> Any:
    """Build batch augmentation ``name`` (``transferkit.BatchAugmentation``) and call it on a batch:
    tensors of the same shapes and dtypes back, targets still summing to 1, and, with
    ``state_dict()``, the same output again after ``load_state_dict`` (a resumed run). Returns it."""
    aug = transferkit.create_augmentation(name, num_classes=num_classes, **params)
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    targets = torch.eye(num_classes)[torch.arange(4) % num_classes]
    state = aug.state_dict() if callable(getattr(aug, "state_dict", None)) else None
    out = aug(images.clone(), targets.clone())
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise _fail("augmentation", name, f"returned {type(out).__name__}, not the tuple (images, targets)")
    for got, sent in zip(out, (images, targets)):
        if got.shape != sent.shape or got.dtype != sent.dtype:
            raise _fail("augmentation", name, f"returned {tuple(got.shape)} {got.dtype} for {tuple(sent.shape)} {sent.dtype}")
    if not torch.allclose(out[1].sum(1), torch.ones(4), atol=1e-4):
        raise _fail("augmentation", name, f"returned targets whose rows do not sum to 1: {out[1].sum(1).tolist()}")
    if state is not None:
        aug.load_state_dict(state)
        again = aug(images.clone(), targets.clone())
        if not all(torch.equal(a, b) for a, b in zip(out, again)):
            raise _fail("augmentation", name, "gave another batch after load_state_dict(state_dict()): a resumed run would differ")
    return aug


def check_averager(name: str, **params: Any) -> Any:
    """Build averager ``name`` (``transferkit.Averager``) on a tiny model, update it over a few
    steps, then check ``module`` (same state keys, same output shape) and that its
    ``state_dict()`` loaded into a new one gives the same averaged weights. Returns it."""
    torch.manual_seed(0)
    model = nn.Sequential(TinyCNN(4), nn.Linear(8, 3))
    averager = transferkit.create_averager(name, model, **params)
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        averager.update(model)
        if callable(getattr(averager, "epoch_end", None)):
            averager.epoch_end(model, step)
    if callable(getattr(averager, "finalize", None)):
        averager.finalize([torch.randn(4, 3, 32, 32)])
    module = averager.module
    if not isinstance(module, nn.Module) or set(module.state_dict()) != set(model.state_dict()):
        raise _fail("averager", name, "has a module that is not the model's copy (an nn.Module with the model's state keys)")
    with torch.no_grad():
        if module.eval()(torch.randn(2, 3, 32, 32)).shape != (2, 3):
            raise _fail("averager", name, "has a module whose output is not the model's shape")
    fresh = transferkit.create_averager(name, nn.Sequential(TinyCNN(4), nn.Linear(8, 3)), **params)
    fresh.load_state_dict(averager.state_dict())
    theirs = fresh.module.state_dict()
    if any(not torch.equal(v, theirs[k]) for k, v in module.state_dict().items()):
        raise _fail("averager", name, "loaded from its state_dict() does not hold the same weights: a resumed run would differ")
    return averager


def check_tta(name: str, **params: Any) -> Any:
    """Build TTA policy ``name`` (``transferkit.TTAPolicy``) and take its views of a uint8 image at
    a 32-px evaluation geometry: uint8 32 x 32 x 3 arrays, the same twice. Returns it."""
    policy = transferkit.create_tta(name, **params)
    image = np.random.default_rng(0).integers(0, 256, (45, 37, 3), dtype=np.uint8)
    preprocessing = Preprocessing(image_size=32, resize_shorter_side=37, mean=(0.5,) * 3, std=(0.25,) * 3)
    views = [np.asarray(v) for v in policy.views(image, preprocessing.resize, 32)]
    if not views or any(v.dtype != np.uint8 or v.shape != (32, 32, 3) for v in views):
        raise _fail("tta", name, f"gave views {[(v.dtype.name, v.shape) for v in views]}: want uint8 arrays of (32, 32, 3)")
    again = policy.views(image, preprocessing.resize, 32)
    if len(again) != len(views) or any(not np.array_equal(a, b) for a, b in zip(views, again)):
        raise _fail("tta", name, "gave other views of the same image: views must be deterministic")
    preprocessing.views(image, policy)  # as evaluation stacks them
    return policy


# -- in-process plugins --------------------------------------------------------------------------
def plugin(**hooks: Callable[..., None]) -> ModuleType:
    """A plugin module made of hook functions: ``plugin(register_backbones=lambda register: ...)``."""
    return module_plugin(**hooks)


@contextlib.contextmanager
def registered(plugin_object: Any, name: str) -> Iterator[str]:
    """``plugin_object`` (a module or object with ``@transferkit.hookimpl`` functions) registered
    as plugin ``name`` inside the ``with`` block, unregistered after it."""
    plugins = transferkit.get_plugins()
    registered_name = plugins.register(plugin_object, name)
    try:
        yield registered_name
    finally:
        plugins.unregister(registered_name)


@contextlib.contextmanager
def registered_backbone(
    name: str = TINY_BACKBONE, factory: Callable[..., nn.Module] = tiny_cnn, plugin_name: str | None = None, **extras: Any
) -> Iterator[str]:
    """Backbone ``name`` built by ``factory`` registered (by plugin ``plugin_name``) inside the
    ``with`` block; yields ``name``. ``extras`` go to ``register`` (e.g. ``weights={...}``)."""
    hooks = plugin(register_backbones=lambda register: register(name, factory, description="test backbone", **extras))
    with registered(hooks, plugin_name or f"test-plugin {name}"):
        yield name


# -- data, recipe, run ----------------------------------------------------------------------------
def make_image(colour: tuple[int, int, int], rng: np.random.Generator, size: int | tuple[int, int] = 40) -> Image.Image:
    """A noisy square (or ``(height, width)``) of one colour."""
    height, width = (size, size) if isinstance(size, int) else size
    noise = rng.integers(-30, 30, size=(height, width, 3))
    return Image.fromarray(np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8))


def write_image_folder(
    root: Path,
    per_class: Mapping[str, int] = TINY_SPLITS,
    seed: int = 0,
    ext: str = ".png",
    *,
    size: int | tuple[int, int] = 40,
    colours: Mapping[str, tuple[int, int, int]] = COLOURS,
) -> Path:
    """An ImageFolder: ``root/<split>/<class>/*`` with ``per_class[split]`` images of each colour
    class (red, green, blue by default); deterministic for a seed."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for cls, colour in colours.items():
            folder = Path(root) / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                make_image(colour, rng, size).save(folder / f"{cls}_{split}_{i}{ext}")
    return Path(root)


def write_multilabel_csv(root: Path, per_split: Mapping[str, int] = TINY_SPLITS, seed: int = 0, *, size: int = 40,
                         colours: Mapping[str, tuple[int, int, int]] = COLOURS) -> Path:
    """A multi-label CSV manifest ``root/labels.csv`` (``path,label,split``; ``per_split[split]`` x 3
    images each): each image's left and right halves are noisy squares of two colours (alike or
    not), its labels the colours it shows (``red;blue``); deterministic for a seed."""
    rng = np.random.default_rng(seed)
    names = list(colours)
    rows = ["path,label,split"]
    (Path(root) / "images").mkdir(parents=True, exist_ok=True)
    for split, count in per_split.items():
        for i in range(count * len(names)):
            left, right = names[i % len(names)], names[int(rng.integers(len(names)))]
            halves = [np.asarray(make_image(colours[c], rng, (size, size // 2))) for c in (left, right)]
            Image.fromarray(np.concatenate(halves, axis=1)).save(Path(root) / "images" / f"{split}_{i}.png")
            rows.append(f"images/{split}_{i}.png,{';'.join(sorted({left, right}))},{split}")
    (Path(root) / "labels.csv").write_text("\n".join(rows) + "\n")
    return Path(root) / "labels.csv"


def make_recipe(root: Path, backbone: str = TINY_BACKBONE, /, **sections: Any) -> dict[str, Any]:
    """A recipe dict that trains in seconds on ``write_image_folder``'s images (32 px, 2 + 2
    epochs) with backbone ``backbone``; ``sections`` update its tables, e.g.
    ``phases={"finetune": {"epochs": 1}}`` or ``backbone={"params": {"width": 4}}``. A setting
    given as ``None`` is left out (the recipe's default).

    It pays only for training: the probe's L2 strength is fixed (``phases.extract.C = 100``, what
    its cross-validation chooses on these images, so the probe is the same), the run keeps its last
    weights (``train.final = "last"``: no choice among the probe, the fine-tuned model and their
    interpolations) and fits no temperature (``train.calibrate = "never"``). A test of one of these
    asks for it: ``phases={"extract": {"C": None}}`` (cross-validated), ``train={"final": "auto"}``
    (chosen on the validation split alone: ``train.folds = 1``), ``train={"calibrate": "always"}``
    (on the 9 validation images)."""
    recipe: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "data": {"source": "imagefolder", "root": str(root), "image_size": 32, "batch_size": 8, "val_fraction": 0.25},
        "backbone": {"name": backbone, "weights": "none"},
        "phases": {"extract": {"epochs": 2, "lr": 0.05, "C": 100.0}, "finetune": {"epochs": 2, "lr_ratio": 0.1}},
        # cross-fitting (train.folds), the final choice and calibration are tested where they are the point
        "train": {"weight_decay": 0.0, "folds": 1, "final": "last", "calibrate": "never"},
    }
    for key, value in sections.items():
        if isinstance(recipe.get(key), dict) and isinstance(value, Mapping):
            for inner, setting in value.items():
                if isinstance(recipe[key].get(inner), dict) and isinstance(setting, Mapping):
                    recipe[key][inner].update(setting)
                else:
                    recipe[key][inner] = setting
        else:
            recipe[key] = value
    return _without_none(recipe)


def make_multilabel_recipe(csv: Path, backbone: str = TINY_BACKBONE, /, **sections: Any) -> dict[str, Any]:
    """``make_recipe`` for ``write_multilabel_csv``'s manifest: ``task = "multilabel"``, a CSV source."""
    recipe = make_recipe(csv, backbone, **sections)
    recipe["task"] = "multilabel"
    recipe["data"]["source"] = "csv"
    return recipe


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def write_recipe(path: Path, recipe: Mapping[str, Any]) -> Path:
    """``recipe`` as a TOML file at ``path``."""
    Path(path).write_text(tomli_w.dumps(dict(recipe)))
    return Path(path)


def train_run(recipe: Mapping[str, Any], output: Path) -> Path:
    """Train ``recipe`` quietly into ``output``; returns the run directory."""
    return transferkit.finetune(dict(recipe), output=output, quiet=True).run_dir


# -- pytest fixtures ------------------------------------------------------------------------------
@pytest.fixture
def tiny_backbone() -> Iterator[str]:
    """Backbone ``tiny/cnn`` (``TinyCNN``) registered for the test; yields its name."""
    with registered_backbone() as name:
        yield name


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """root/train/{red,green,blue}/ (12 each) and root/test/ (4 each), 40-px PNGs."""
    return write_image_folder(tmp_path / "images")


@pytest.fixture
def tiny_recipe(image_folder: Path, tiny_backbone: str) -> dict[str, Any]:
    """``make_recipe`` on ``image_folder`` with ``tiny/cnn``."""
    return make_recipe(image_folder, tiny_backbone)


_SESSION_RUNS: dict[Path, Path] = {}  # pytest's base temp folder (one per session) -> its tiny run


@pytest.fixture
def tiny_run(tiny_backbone: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run for this test alone, with ``tiny/cnn`` registered so that it loads.

    Trained once per session through the command line, as a user would (``transferkit finetune
    RECIPE --output DIR --set phases.finetune.epochs=1``), then copied for each test, so a test
    may write into its copy. Unlike ``make_recipe``'s runs it has all of a run's end: the probe's C
    by cross-validation, the default final weights (the probe + fine-tuned ensemble, the probe reading
    40 px and the fine-tuned network 32), a temperature and a rejection rule."""
    base = tmp_path_factory.getbasetemp()
    if base not in _SESSION_RUNS:
        root = tmp_path_factory.mktemp("tiny-run")
        full = make_recipe(write_image_folder(root / "images"), tiny_backbone, phases={"extract": {"C": None, "image_size": 40}},
                           train={"final": "ensemble", "calibrate": "always"})
        recipe = write_recipe(root / "tiny.toml", full)
        if main(["finetune", str(recipe), "--output", str(root / "run"), "--set", "phases.finetune.epochs=1"]) != 0:
            raise RuntimeError("transferkit.testing.tiny_run: the tiny run failed; its error is printed above")
        _SESSION_RUNS[base] = root / "run"
    return Path(shutil.copytree(_SESSION_RUNS[base], tmp_path / "run"))
