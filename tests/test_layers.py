"""The layers of transferkit, top to bottom, and their rule: a module imports only from its own
layer or a lower one. Every import counts (at the top of a file, inside a function, under ``if
TYPE_CHECKING:``, and the public API's lazy table ``_LAZY``, whose names import their modules on
first use); a plugin's modules name a plugin by string and load it through the plugin manager,
which is how plugins plug in, not an import. Every module of ``transferkit/`` and of the plugin
packages sits in exactly one layer. docs/architecture.md shows ``picture()``, checked here:
``python tests/test_layers.py --write`` rewrites it after a change to ``LAYERS``."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
MARK = "<!-- the layers, top to bottom: generated from tests/test_layers.py (python tests/test_layers.py --write) -->"
PACKAGES = ("transferkit", "plugins/*/src/*", "examples/*/src/*")  # package folders, as globs under ROOT


@dataclass(frozen=True)
class Layer:
    name: str
    about: str
    modules: tuple[str, ...]  # paths under ROOT without ".py", as fnmatch patterns
    reaches: tuple[str, ...] | None = None  # when set: the only modules of other layers it may import


PUBLIC_API = ("transferkit", "transferkit.testing")
LAYERS = (
    Layer("plugins", "separate distributions: transferkit's public names and transferkit.testing only",
          ("plugins/*/src/*", "examples/*/src/*"), reaches=PUBLIC_API),
    Layer("command line and public API", "argparse shells (each workbench command's __init__), the lazy public names (PEP 562),"
          " the test helpers",
          ("transferkit/__init__", "transferkit/__main__", "transferkit/cli", "transferkit/testing",
           "transferkit/workbench/__init__", "transferkit/workbench/*/__init__")),
    Layer("the commands' work", "finetune, and what check, lr-find, sweep, report, export, audit, runs, compare, select, suggest do",
          ("transferkit/api", "transferkit/workbench/*/[!_]*")),
    Layer("finished runs", "load a run, predict, predict files, evaluate on a run's test data or --data",
          ("transferkit/inference", "transferkit/predict_files", "transferkit/evaluate_run", "transferkit/evaluate_multilabel",
           "transferkit/label_sets", "transferkit/label_set_files")),
    Layer("recipe loading", "TOML and --set into a Recipe, checked against the registries and runs' files",
          ("transferkit/recipe_loading",)),
    Layer("engine", "a run: prepare, training, the final weights, confidence, the run directory, runtime, preflight checks",
          ("transferkit/engine/*",)),
    Layer("built-in plugins", "timm and torchvision backbones, datasets, CSV manifests, augmentations",
          ("transferkit/builtin/*",)),
    Layer("data and models", "images, decoding, transforms; the backbone contract, weights files, the head",
          ("transferkit/data/*", "transferkit/models/*")),
    Layer("plugin manager", "pluggy, hook specifications, the plugin contract's Protocols, registries, components built by name",
          ("transferkit/plugins", "transferkit/plugin_guard", "transferkit/hookspecs", "transferkit/protocols",
           "transferkit/registry", "transferkit/components")),
    Layer("foundation", "the recipe schema, errors, progress, ImageNet constants",
          ("transferkit/recipe", "transferkit/recipe_tasks", "transferkit/errors", "transferkit/progress", "transferkit/imagenet")),
)
# (importer, imported) -> why this upward import stays; each entry must still be one
EXCEPTIONS: dict[tuple[str, str], str] = {}


# -- the import graph ------------------------------------------------------------------------
def find_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Module name -> file, for every .py file of the package folders matching ``packages``."""
    found: dict[str, Path] = {}
    for pattern in packages:
        for folder in sorted(p for p in root.glob(pattern) if (p / "__init__.py").is_file()):
            for path in folder.rglob("*.py"):
                parts = path.relative_to(folder.parent).with_suffix("").parts
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or the nearest enclosing module that is one of ``modules``."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    return {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}


def _lazy_table(tree: ast.Module) -> list[str]:
    """The modules of a PEP 562 ``_LAZY = {"name": "package.module", ...}`` table."""
    return [v.value for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
            and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)
            for v in node.value.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]


def imports_of(name: str, path: Path, modules: dict[str, Path], runtime_only: bool = False) -> set[str]:
    """The first-party modules ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``);
    ``runtime_only``: without ``if TYPE_CHECKING:`` imports and the ``_LAZY`` table."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree) if runtime_only else set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = [] if runtime_only else _lazy_table(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found += [f"{base}.{a.name}" for a in node.names]
    return {m for m in (_known(f, modules) for f in found) if m is not None and m != name}


def import_graph(modules: dict[str, Path], runtime_only: bool = False) -> dict[str, set[str]]:
    return {name: imports_of(name, path, modules, runtime_only) for name, path in modules.items()}


# -- the rule --------------------------------------------------------------------------------
def _where(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def layers_of(modules: dict[str, Path], layers: tuple[Layer, ...] = LAYERS, root: Path = ROOT) -> dict[str, list[int]]:
    """Module -> the indices of the layers whose patterns match it (exactly one, when all is well)."""
    return {name: [i for i, layer in enumerate(layers) if any(fnmatchcase(_where(path, root), p) for p in layer.modules)]
            for name, path in modules.items()}


def misplaced(modules: dict[str, Path], layers: tuple[Layer, ...] = LAYERS, root: Path = ROOT) -> list[str]:
    out = []
    for name, found in sorted(layers_of(modules, layers, root).items()):
        if len(found) != 1:
            where = ", ".join(layers[i].name for i in found) or "no layer"
            out.append(f"{_where(modules[name], root)}.py is in {where}; put it in exactly one of LAYERS")
    return out


def upward_imports(graph: dict[str, set[str]], layer_of: dict[str, int], layers: tuple[Layer, ...] = LAYERS,
                   exceptions: dict[tuple[str, str], str] | None = None) -> list[str]:
    """One line per import that goes up a layer, or outside what its layer ``reaches``."""
    out = []  # a module in no layer is misplaced()'s to report
    for name in sorted(n for n in graph if n in layer_of):
        mine = layers[layer_of[name]]
        for target in sorted(t for t in graph[name] if t in layer_of):
            theirs = layers[layer_of[target]]
            if (name, target) in (exceptions or {}):
                continue
            if layer_of[target] < layer_of[name]:
                out.append(f"{name} ({mine.name}) imports {target} ({theirs.name}), a layer above it")
            elif mine.reaches is not None and theirs is not mine and target not in mine.reaches:
                out.append(f"{name} ({mine.name}) imports {target}; it may import only {', '.join(mine.reaches)}")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), plus self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = stack[stack.index(node):]
            del stack[stack.index(node):]
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def picture(layers: tuple[Layer, ...] = LAYERS, width: int = 104) -> str:
    """The layers as docs/architecture.md shows them: each with what it holds and its modules."""
    lines: list[str] = []
    for i, layer in enumerate(layers):
        if i:
            lines += ["        │", "        ▼"]
        lines.append(f"{layer.name} — {layer.about}")
        folders: dict[str, list[str]] = {}
        for pattern in layer.modules:
            folder, _, stem = pattern.rpartition("/")
            if stem == "*":  # a whole folder
                lines.append(f"    {pattern}")
            else:
                folders.setdefault(folder + "/", []).append(stem)
        for folder, stems in folders.items():
            line = f"    {folder}"
            for stem in stems:
                if len(line) + len(stem) + 2 > width:
                    lines.append(line)
                    line = " " * (len(folder) + 4)
                line += f"  {stem}"
            lines.append(line)
    return "\n".join(lines)


def documented_picture(text: str) -> str | None:
    """The fenced block after ``MARK`` in docs/architecture.md."""
    _, mark, rest = text.partition(MARK)
    if not mark or not rest.startswith("\n```\n"):
        return None
    return rest[len("\n```\n"):].partition("\n```")[0]


def _layer_index(modules: dict[str, Path], layers: tuple[Layer, ...] = LAYERS, root: Path = ROOT) -> dict[str, int]:
    return {name: found[0] for name, found in layers_of(modules, layers, root).items() if found}


# -- the tests -------------------------------------------------------------------------------
def test_every_module_is_in_exactly_one_layer():
    wrong = misplaced(find_modules())
    assert not wrong, "\n".join(wrong)


def test_imports_go_only_down_or_sideways():
    modules = find_modules()
    wrong = upward_imports(import_graph(modules), _layer_index(modules), LAYERS, EXCEPTIONS)
    assert not wrong, "imports up the layers of tests/test_layers.py:\n" + "\n".join(wrong)


def test_every_exception_is_still_an_upward_import():
    modules = find_modules()
    graph, layer_of = import_graph(modules), _layer_index(modules)
    stale = [pair for pair in EXCEPTIONS if pair[1] not in graph[pair[0]] or not upward_imports({pair[0]: {pair[1]}}, layer_of)]
    assert not stale, "\n".join(f"{a} -> {b}: no longer an upward import; remove it from EXCEPTIONS" for a, b in stale)


def test_no_import_cycles():
    found = cycles(import_graph(find_modules(), runtime_only=True))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_public_api_eagerly_imports_only_the_foundation():
    graph = import_graph(find_modules(), runtime_only=True)  # tests/test_startup.py: no torch
    assert graph["transferkit"] <= {"transferkit.errors", "transferkit.hookspecs", "transferkit.imagenet"}


def test_the_architecture_doc_shows_the_layers_of_this_file():
    assert documented_picture(DOC.read_text()) == picture(), \
        "docs/architecture.md's layer picture differs from LAYERS: run python tests/test_layers.py --write"


def test_an_upward_import_is_reported(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "top.py").write_text("from . import bottom\n")
    (fake / "bottom.py").write_text("def later():\n    from .top import something  # inside a function: counts\n")
    (fake / "side.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fake.top\n")
    layers = (Layer("top", "", ("fake/__init__", "fake/top")), Layer("bottom", "", ("fake/bottom", "fake/side")))
    modules = find_modules(tmp_path, ("fake",))
    assert misplaced(modules, layers, tmp_path) == []
    assert upward_imports(import_graph(modules), _layer_index(modules, layers, tmp_path), layers) == [
        "fake.bottom (bottom) imports fake.top (top), a layer above it",
        "fake.side (bottom) imports fake.top (top), a layer above it",
    ]
    assert misplaced(modules, layers[:1], tmp_path) == ["fake/bottom.py is in no layer; put it in exactly one of LAYERS",
                                                        "fake/side.py is in no layer; put it in exactly one of LAYERS"]


def test_an_upward_import_planted_in_the_engine_is_reported():
    modules = find_modules()
    graph = import_graph(modules)
    graph["transferkit.engine.training.trainer"].add("transferkit.cli")
    graph["transferkit_averaging.checkpoints"].add("transferkit.engine.rundir.run_dir")
    assert upward_imports(graph, _layer_index(modules)) == [
        "transferkit.engine.training.trainer (engine) imports transferkit.cli (command line and public API), a layer above it",
        "transferkit_averaging.checkpoints (plugins) imports transferkit.engine.rundir.run_dir; it may import only transferkit,"
        " transferkit.testing",
    ]


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        text = DOC.read_text()
        old = documented_picture(text)
        assert old is not None, f"{DOC}: no fenced block after the marker {MARK}"
        DOC.write_text(text.replace(f"{MARK}\n```\n{old}\n```", f"{MARK}\n```\n{picture()}\n```"))
    else:
        print(picture())
