"""``transferkit suggest RUN --pool DIR --count N``: which unlabelled images to label next, most
useful first, as a CSV a person fills in and a contact sheet.

A light shell (``transferkit --help`` imports it): the ranking is ``picking`` (numpy), the run's
model on the pool ``pool``, the files ``sheet``.
"""

from __future__ import annotations

import argparse

NAME = "suggest"
HELP = "rank unlabelled images by how much a label would help a finished run (uncertainty x novelty); write a CSV to fill in"
DEFAULT_COUNT = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run (its model scores the pool)")
    parser.add_argument("--pool", required=True, metavar="DIR", help="a folder of unlabelled images (searched recursively)")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, metavar="N", help=f"images to suggest (default {DEFAULT_COUNT})")
    parser.add_argument("--output", metavar="DIR", help="where suggest.csv and suggest.html go (default runs/suggest/<timestamp>)")


def run(args: argparse.Namespace) -> int:
    from .pool import suggest  # see workbench/__init__.py: --help imports this module, not the work

    suggest(args.run_dir, args.pool, args.count, output=args.output)
    return 0
