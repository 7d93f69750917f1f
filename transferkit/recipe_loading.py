"""Reading a recipe: TOML file, ``--set key.path=value`` overrides, validation to one-line errors."""

from __future__ import annotations

import copy
import difflib
import inspect
import os
import stat
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, get_args

from pydantic import BaseModel, ValidationError

from .engine.rundir.layout import WEIGHTS_FILE
from .errors import RecipeError
from .models.weight_sources import sha256_of
from .plugins import registry
from .recipe import AUTO_BACKBONE, Recipe
from .registry import factory_parameters

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RecipeSource = str | Path | Mapping[str, Any] | Recipe

# Sources that read images from disk and therefore need ``data.root``.
ROOTED_SOURCES = {"imagefolder", "csv"}
# keys that say one thing two ways (a recipe sets one): overriding one replaces the recipe's other
ALTERNATIVE_KEYS = {"phases.finetune.lr": "phases.finetune.lr_ratio", "phases.finetune.lr_ratio": "phases.finetune.lr"}


def load_recipe(
    source: RecipeSource,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    check_components: bool = True,
    check_data: bool = True,
) -> Recipe:
    """Build a validated Recipe from a TOML path, a dict or a Recipe, then apply overrides."""
    if isinstance(source, Recipe):
        origin, data = "recipe", source.model_dump(mode="python")
    elif isinstance(source, Mapping):
        origin, data = "recipe", copy.deepcopy(dict(source))
    else:
        path = Path(source)
        origin = str(source)
        if not path.is_file():
            raise RecipeError(f"{origin}: no such recipe file; check the path (recipes live in recipes/*.toml)")
        try:
            data = read_toml(path)
        except tomllib.TOMLDecodeError as exc:
            raise RecipeError(f"{origin}: not valid TOML: {exc}") from None
    pairs = _pairs(overrides)
    for key, value in pairs:
        other = ALTERNATIVE_KEYS.get(key)
        if other is not None and other not in {k for k, _ in pairs}:
            _drop_path(data, other)
        _set_path(data, key, value, origin)
    recipe = validate_recipe(data, origin)
    check_paths(recipe, origin, check_data)
    if check_components:
        check_component_names(recipe, origin, check_data)
    return recipe


def validate_recipe(data: Mapping[str, Any], origin: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(f"{origin}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(err["loc"][-1]), _keys_at(err["loc"][:-1]), n=1, cutoff=0.6)
        hint = f"; did you mean {'.'.join([*map(str, err['loc'][:-1]), close[0]])}?" if close else ""
        return f"{loc}: unknown key; remove it or check its spelling{hint}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    given = err.get("input")
    shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
    if kind in ("int_type", "float_type", "bool_type") and isinstance(given, str):  # strict: "32" is not 32
        return f"{loc}: {msg}, not a string (got {given!r}); write the value without quotes"
    return f"{loc}: {msg}{shown}"


def _keys_at(loc: Sequence[Any]) -> list[str]:
    """The keys the recipe's table at ``loc`` takes (``("phases", "extract")`` -> epochs, lr, ...)."""
    model: Any = Recipe
    for part in loc:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            return []
        found = [a for a in (field.annotation, *get_args(field.annotation)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not found:
            return []
        model = found[0]
    return list(model.model_fields)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=3"`` -> ``("train.epochs", 3)``; the value is read as TOML, else as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set phases.extract.epochs=3")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _pairs(overrides: Iterable[str] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    if isinstance(overrides, Mapping):
        return [(k.replace("__", "."), v) for k, v in overrides.items()]
    return [parse_override(o) for o in overrides]


def _set_path(data: dict[str, Any], key: str, value: Any, origin: str) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"{origin}: --set {key}: {part!r} is a value, not a table")
        node = child
    node[parts[-1]] = value


def _drop_path(data: dict[str, Any], key: str) -> None:
    *tables, last = key.split(".")
    node: Any = data
    for part in tables:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def check_paths(recipe: Recipe, origin: str, check_data: bool = True) -> None:
    """Files the recipe names must exist before anything is written."""
    data = recipe.data
    if check_data and data.source in ROOTED_SOURCES:
        if not data.root:
            raise RecipeError(f"{origin}: data.root: required for source {data.source!r}; set it, e.g. --set data.root=DIR")
        if not Path(data.root).exists():
            raise RecipeError(f"{origin}: data.root: {data.root!r} does not exist; point it at your images")
    if recipe.train.device not in ("auto", "cpu"):  # a device this machine lacks: now, not after a run folder exists
        from .engine.runtime.device import device_problem  # torch: only for a named device

        problem = device_problem(recipe.train.device)
        if problem:
            raise RecipeError(f"{origin}: {problem}")
    weights = recipe.backbone.weights
    run = None
    if weights not in ("imagenet", "none"):
        from .engine.rundir.model_files import trained_run  # torch: only for weights from a file or a run

        run = trained_run(weights)
    if weights not in ("imagenet", "none") and run is None and not Path(weights).is_file():
        raise RecipeError(
            f"{origin}: backbone.weights: file {weights!r} not found; use \"imagenet\", \"none\", a path to a .pth/.safetensors file"
            " or a finished run's folder"
        )
    if recipe.backbone.sha256 and weights not in ("imagenet", "none"):
        actual = sha256_of(run / WEIGHTS_FILE if run is not None else Path(weights))
        if actual != recipe.backbone.sha256:
            raise RecipeError(
                f"{origin}: backbone.sha256: {weights} has sha256 {actual}, expected {recipe.backbone.sha256};"
                " the file is corrupt or not the one intended"
            )


def check_component_names(recipe: Recipe, origin: str, check_data: bool = True) -> None:
    """Every named component must be registered by some plugin."""
    if recipe.backbone.name == AUTO_BACKBONE:
        checks = [("backbone", f"backbone.candidates[{i}]", name) for i, name in enumerate(recipe.backbone.candidates)]
    else:
        checks = [("backbone", "backbone.name", recipe.backbone.name)]
    if check_data:
        checks.append(("dataset", "data.source", recipe.data.source))
    checks += [("augmentation", f"augment.image[{i}].name", s.name) for i, s in enumerate(recipe.augment.image)]
    checks += [("augmentation", f"augment.batch[{i}].name", s.name) for i, s in enumerate(recipe.augment.batch)]
    if recipe.averaging is not None:
        checks.append(("averager", "averaging.name", recipe.averaging.name))
    for kind, key, name in checks:
        reg = registry(kind)
        if name not in reg:
            raise RecipeError(f"{origin}: {key}: {reg.unknown_message(name)}")
    if check_data:  # a downloading source says now (nothing written) when data.root is not for it
        check_root = registry("dataset").get(recipe.data.source).extras.get("check_root")
        problem = check_root(recipe.data.root) if callable(check_root) else None
        if problem:
            raise RecipeError(f"{origin}: {problem}")
    if recipe.train.label_smoothing > 0:
        for i, spec in enumerate(recipe.augment.batch):
            if spec.params.get("label_smoothing", 0):
                raise RecipeError(
                    f"{origin}: augment.batch[{i}].label_smoothing: train.label_smoothing is set too; smoothing twice"
                    " is rarely meant: keep one of them"
                )
    for stage, specs in (("image", recipe.augment.image), ("batch", recipe.augment.batch)):
        for i, spec in enumerate(specs):
            entry = registry("augmentation").get(spec.name)
            got = entry.extras.get("kind", "image")
            if got != stage:
                raise RecipeError(
                    f"{origin}: augment.{stage}[{i}].name: {spec.name!r} is a {got}-level augmentation;"
                    f" move it to [[augment.{got}]]"
                )
            leading = (1,) if got == "batch" else ()
            _check_params(entry.factory, leading, spec.params, f"{origin}: augment.{stage}[{i}]", spec.name)
    if recipe.averaging is not None:
        entry = registry("averager").get(recipe.averaging.name)
        _check_params(entry.factory, (None,), recipe.averaging.params, f"{origin}: averaging", recipe.averaging.name)


def _check_params(factory: Any, leading: tuple, params: dict[str, Any], where: str, name: str) -> None:
    """A parameter the component does not take is named with the ones it does take."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*leading, **params)
    except TypeError as exc:
        allowed = ", ".join(factory_parameters(factory)) or "none"
        raise RecipeError(f"{where}: {name}: {exc}; its parameters: {allowed}") from None


MAX_RECIPE_BYTES = 1 << 20  # a recipe is a page of text; a megabyte is not a recipe


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as data; what cannot be read as TOML (not UTF-8, nested thousands deep, too
    large, not a regular file) is a ``tomllib.TOMLDecodeError`` saying why, like a syntax error."""
    try:
        with open(path, "rb", buffering=0) as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise tomllib.TOMLDecodeError("not a regular file")
            data = fh.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        raise tomllib.TOMLDecodeError(f"cannot read it ({exc.strerror})") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise tomllib.TOMLDecodeError(f"over {MAX_RECIPE_BYTES:,} bytes; a recipe is a short text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise tomllib.TOMLDecodeError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start});"
                                      " save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise tomllib.TOMLDecodeError("nested too deeply (arrays or tables inside each other thousands of times)") from None
