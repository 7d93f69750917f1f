"""The trainer's workbench: commands around a run (check, lr-find, sweep, report, export, audit,
runs, compare).

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
``transferkit.cli`` adds one subcommand per module listed here. ``transferkit --help`` imports
every command module, so a command module stays light (argparse and ``transferkit``'s lazy
public API): its work lives in a sibling module (``check`` -> ``sanity_checks``, ``lr_find`` ->
``lr_find_run``, ``sweep`` -> ``sweep_run``, ``report`` -> ``report_content``, ``export_formats``
-> ``export_run``, ``audit`` -> ``audit_run``, ``runs`` -> ``runs_table``, ``compare`` ->
``compare_runs``) that ``run`` imports or reaches through ``transferkit.<name>``.
tests/test_startup.py checks that ``--help`` imports no torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

COMMAND_MODULES = ("check", "lr_find", "sweep", "report", "export_formats", "audit", "runs", "compare")


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
