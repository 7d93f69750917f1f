"""The package's import graph, read from the source with ``ast`` (module-level and function-level
imports; ``if TYPE_CHECKING:`` blocks left out): no cycles, and imports point down the layers of
docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "transferkit"
FACADE = "transferkit"  # transferkit/__init__.py: the public names, loaded lazily
# the command line and the test helpers sit above the public API and use it
FACADE_USERS = {"transferkit.cli", "transferkit.testing", "transferkit.workbench.check", "transferkit.workbench.lr_find"}
# who may import whom: a module of the key's layer imports none of the listed ones
FORBIDDEN = {
    "transferkit.engine": (
        "transferkit.cli", "transferkit.workbench", "transferkit.api", "transferkit.inference", "transferkit.evaluation",
    ),
    "transferkit.data": ("transferkit.engine", "transferkit.models", "transferkit.cli", "transferkit.workbench"),
    "transferkit.models": ("transferkit.engine", "transferkit.data", "transferkit.cli", "transferkit.workbench"),
    "transferkit.builtin": ("transferkit.engine", "transferkit.cli", "transferkit.workbench"),
}
# the bottom: the plugin manager and what every layer may use
BASE = {"transferkit.errors", "transferkit.hookspecs", "transferkit.registry", "transferkit.plugins", "transferkit.protocols",
        "transferkit.imagenet", "transferkit.progress", "transferkit.plugin_guard"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    return skipped


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The transferkit modules ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "transferkit"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "transferkit":
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), plus self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_below_the_public_facade():
    graph = import_graph()
    below = {name: targets - {FACADE} for name, targets in graph.items() if name != FACADE}
    assert cycles(below) == []


def test_only_the_command_line_and_the_test_helpers_import_the_facade():
    graph = import_graph()
    assert {name for name, targets in graph.items() if FACADE in targets} <= FACADE_USERS
    assert graph[FACADE] <= BASE  # eagerly: errors, hookspecs, imagenet; the rest is lazy


def test_imports_point_down_the_layers():
    wrong = [
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        for layer, forbidden in FORBIDDEN.items()
        if name == layer or name.startswith(layer + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    ]
    assert wrong == []


def test_the_base_imports_nothing_above_it():
    graph = import_graph()
    assert {name: graph[name] - BASE for name in BASE if graph[name] - BASE} == {}
