"""Plugins, their tests, the example plugin and the plugin guide use transferkit's public API
only: names in ``transferkit.__all__``, and the ``transferkit.testing`` helpers for tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import transferkit
import transferkit.testing

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_SUBMODULES = {"testing": transferkit.testing}


def _sources() -> list[tuple[str, str]]:
    """(where, Python source) of every plugin, plugin test and example file, and the guide's code."""
    files = sorted(ROOT.glob("plugins/*/src/**/*.py")) + sorted(ROOT.glob("plugins/*/tests/**/*.py"))
    files += sorted(ROOT.glob("examples/**/*.py"))
    out = [(str(f.relative_to(ROOT)), f.read_text()) for f in files]
    for doc in [ROOT / "docs" / "plugins.md", *sorted(ROOT.glob("examples/**/*.md"))]:
        for i, block in enumerate(re.findall(r"^```python\n(.*?)^```", doc.read_text(), flags=re.S | re.M)):
            out.append((f"{doc.relative_to(ROOT)} (python block {i + 1})", block))
    return out


def private_uses(source: str) -> list[str]:
    """What ``source`` takes from transferkit beyond its public API. A quoted fragment of the guide
    (elided with ``# ...``) is read by its import lines and ``transferkit.<name>`` uses."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        lines = [line.strip() for line in source.splitlines() if line.strip().startswith(("import ", "from "))]
        uses = [f"transferkit.{name}" for name in re.findall(r"(?<![\w.])transferkit\.(\w+)", source)]
        tree = ast.parse("\n".join(lines + uses))
    bad = []
    public = set(transferkit.__all__)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                head, _, sub = alias.name.partition(".")
                if head == "transferkit" and sub and sub not in PUBLIC_SUBMODULES:
                    bad.append(f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            head, _, sub = node.module.partition(".")
            if head != "transferkit":
                continue
            if not sub:
                bad += [f"from transferkit import {a.name}" for a in node.names if a.name not in public | set(PUBLIC_SUBMODULES)]
            elif sub in PUBLIC_SUBMODULES:
                module = PUBLIC_SUBMODULES[sub]
                bad += [f"from {node.module} import {a.name}" for a in node.names if a.name.startswith("_") or not hasattr(module, a.name)]
            else:
                bad.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "transferkit":
            if node.attr not in public | set(PUBLIC_SUBMODULES):
                bad.append(f"transferkit.{node.attr}")
    return bad


def test_plugins_their_tests_the_example_and_the_guide_use_only_the_public_api():
    found = {where: uses for where, source in _sources() if (uses := private_uses(source))}
    assert found == {}


def test_the_check_sees_private_uses():
    source = "import transferkit.engine.run\nfrom transferkit.plugins import module_plugin\nfrom transferkit import hookimpl, _LAZY\n" \
             "transferkit.cli.main([])\nfrom transferkit.testing import tiny_run, _SESSION_RUNS\n"
    assert private_uses(source) == ["import transferkit.engine.run", "from transferkit.plugins import ...",
                                    "from transferkit import _LAZY", "from transferkit.testing import _SESSION_RUNS",
                                    "transferkit.cli"]
