"""``transferkit runs [DIR]``: the runs under DIR (default runs/), one line each with their status
and figures. The work is in ``table`` (it reads the runs' JSON and TOML files only)."""

from __future__ import annotations

import argparse

NAME = "runs"
HELP = "list the runs under DIR (default runs/): status, backbone, classes, validation and test accuracy, final weights, time"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="where to look, recursively (default runs/)")


def run(args: argparse.Namespace) -> int:
    from .table import format_runs, list_runs  # see workbench/__init__.py

    print(format_runs(list_runs(args.dir), args.dir))
    return 0
