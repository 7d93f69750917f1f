"""The trainer's workbench: commands around a run (check, lr-find, sweep, report, export, audit).

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
``transferkit.cli`` adds one subcommand per module listed here. The modules keep their heavy
imports inside ``run`` so that ``transferkit --help`` stays fast.
"""

from __future__ import annotations

import importlib
from types import ModuleType

COMMAND_MODULES = ("check", "lr_find", "sweep", "report", "export_formats", "audit")


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
