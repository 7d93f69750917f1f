"""The search space of ``transferkit sweep``: ``--grid KEY=V1,V2`` and ``--random KEY=SPEC`` read
into scikit-learn's ``ParameterGrid`` / ``ParameterSampler``, and the list of trials they give.

Values are read like ``--set`` values (TOML, else a bare string). Random specs:
``loguniform:LOW:HIGH``, ``uniform:LOW:HIGH``, ``int:LOW:HIGH`` (both ends included) and
``choice:V1,V2,...``.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any, Mapping, Sequence

from scipy import stats
from sklearn.model_selection import ParameterGrid, ParameterSampler

from ...errors import RecipeError
from ...recipe_loading import parse_override

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RANDOM_KINDS = ("loguniform", "uniform", "int", "choice")
SpaceSpec = Sequence[str] | Mapping[str, Any]


def parse_values(raw: str, where: str) -> list[Any]:
    """``"1e-3,3e-3"`` -> ``[0.001, 0.003]``. The text is read as the inside of a TOML array (so
    ``[0.3, 1.0],[0.5, 1.0]`` gives two lists); failing that, each comma-separated item is read
    like a ``--set`` value (``adamw,sgd`` gives two strings)."""
    try:
        values = tomllib.loads(f"v = [{raw}]")["v"]
    except tomllib.TOMLDecodeError:
        items = [item.strip() for item in raw.split(",")]
        if any(not item for item in items):
            raise RecipeError(f"{where}: an empty value in {raw!r}; separate values with single commas") from None
        values = [parse_override(f"v={item}")[1] for item in items]
    if not values:
        raise RecipeError(f"{where}: no values; give at least one, e.g. {where.split()[0]} phases.extract.lr=1e-3,3e-3")
    return values


def _split(text: str, option: str, example: str) -> tuple[str, str]:
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise RecipeError(f"{option} {text!r}: expected {example}")
    return key, raw


def _number(text: str, where: str) -> float:
    value = parse_override(f"v={text}")[1]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeError(f"{where}: {text!r} is not a number")
    return value


def parse_distribution(key: str, raw: str) -> Any:
    """A ``--random`` spec as a scipy.stats distribution, or a list of values for ``choice``."""
    where = f"--random {key}={raw}"
    kind, _, rest = raw.partition(":")
    if kind == "choice":
        return parse_values(rest, where)
    if kind not in RANDOM_KINDS:
        raise RecipeError(f"{where}: unknown distribution {kind!r}; use one of {', '.join(RANDOM_KINDS)} (e.g. loguniform:1e-4:1e-2)")
    parts = rest.split(":")
    if len(parts) != 2:
        raise RecipeError(f"{where}: expected {kind}:LOW:HIGH, e.g. {kind}:{'1e-4:1e-2' if kind != 'int' else '16:64'}")
    low, high = (_number(p, where) for p in parts)
    if kind == "int":
        if not (isinstance(low, int) and isinstance(high, int)) or low > high:
            raise RecipeError(f"{where}: int needs whole numbers LOW <= HIGH (both included), e.g. int:16:64")
        return stats.randint(low, high + 1)
    if not low < high:
        raise RecipeError(f"{where}: LOW must be below HIGH")
    if kind == "loguniform":
        if low <= 0:
            raise RecipeError(f"{where}: loguniform needs 0 < LOW < HIGH")
        return stats.loguniform(float(low), float(high))
    return stats.uniform(loc=float(low), scale=float(high) - float(low))


def _entries(spec: SpaceSpec, option: str, example: str) -> list[tuple[str, Any]]:
    """``["k=v", ...]`` or ``{k: v}`` as ``(key, raw)`` pairs; a key given twice is an error."""
    pairs = list(spec.items()) if isinstance(spec, Mapping) else [_split(t, option, example) for t in spec]
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise RecipeError(f"{option} {key}: given twice; give each key once with all its values")
        seen.add(key)
    return pairs


def grid_space(spec: SpaceSpec) -> dict[str, list[Any]]:
    """``--grid`` options (or a ``{key: [values]}`` mapping) as a ParameterGrid dict."""
    space = {}
    for key, raw in _entries(spec, "--grid", "KEY=V1,V2,..., e.g. --grid phases.extract.lr=1e-3,3e-3"):
        space[key] = parse_values(raw, f"--grid {key}") if isinstance(raw, str) else list(raw)
        if not space[key]:
            raise RecipeError(f"--grid {key}: no values; give at least one")
    return space


def random_space(spec: SpaceSpec) -> dict[str, Any]:
    """``--random`` options (or a ``{key: spec}`` mapping) as a ParameterSampler dict."""
    example = "KEY=SPEC, e.g. --random phases.extract.lr=loguniform:1e-4:1e-2"
    return {key: parse_distribution(key, raw) if isinstance(raw, str) else raw for key, raw in _entries(spec, "--random", example)}


def plain(value: Any) -> Any:
    """numpy scalars (what scipy draws) as Python numbers, so recipes and TOML take them."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def grid_trials(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination (scikit-learn's ParameterGrid order), keys in the order given."""
    return [{k: plain(params[k]) for k in space} for params in ParameterGrid(space)]


def random_trials(space: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` draws (scikit-learn's ParameterSampler, ``random_state=seed``): the same seed gives
    the same trials. When every key is a ``choice``, draws are without replacement, so at most
    the number of combinations come back."""
    if n < 1:
        raise RecipeError(f"--trials {n}: a random search needs at least one trial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fewer combinations than n: we say so instead
        draws = list(ParameterSampler(space, n_iter=n, random_state=seed))
    return [{k: plain(params[k]) for k in space} for params in draws]


def format_value(value: Any) -> str:
    """A swept value for tables: floats to 4 significant digits, lists as JSON, the rest as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def describe_space(spec: SpaceSpec) -> dict[str, str]:
    """Each key's values or distribution as given, for sweep.json and the log."""
    pairs = list(spec.items()) if isinstance(spec, Mapping) else [_split(t, "", "") for t in spec]
    return {key: raw if isinstance(raw, str) else (", ".join(map(format_value, raw)) if isinstance(raw, list) else repr(raw))
            for key, raw in pairs}
