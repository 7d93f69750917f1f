"""The trainer's workbench: commands around a run (check, lr-find, sweep, report, export, audit,
runs, compare, select, suggest).

Each command is a folder whose ``__init__`` is its argparse shell: ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; ``transferkit.cli`` adds one subcommand per
folder listed here. ``transferkit --help`` imports every shell, so a shell stays light (argparse
and ``transferkit``'s lazy public API); its work lives in the folder's other modules (``check/``
``sanity_checks``, ``lr_find/`` ``steps``, ``range_test``, ``plot_files``; ``sweep/`` ``trials``,
``space``, ``results``; ``report/`` ``content``, ``html_markdown``; ``export/`` ``verified_file``,
``backends``; ``audit/`` ``scan``, ``label_scores``, ``similarity``, ``findings``, ``html_csv``;
``runs/`` ``table``; ``compare/`` ``paired``; ``select/`` ``ranking_files``; ``suggest/`` ``picking``,
``pool``, ``sheet``), which ``run`` imports or reaches through
``transferkit.<name>``.
tests/test_startup.py checks that ``--help`` imports no torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

COMMAND_MODULES = ("check", "lr_find", "sweep", "report", "export", "audit", "runs", "compare", "select", "suggest")


def command_modules() -> list[ModuleType]:
    """The workbench command modules present in this installation, in the order above."""
    found = []
    for name in COMMAND_MODULES:
        try:
            found.append(importlib.import_module(f"{__name__}.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    return found
