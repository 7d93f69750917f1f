"""``transferkit select RECIPE --backbones A,B,C``: which backbone fits the recipe's data, ranked by
a converged probe's cross-validated log-loss on the training images, with each one's cost.

A light shell (``transferkit --help`` imports it): the ranking is
``engine/preflight/backbone_ranking.py`` (shared with ``backbone.name = "auto"``), the table and
files ``ranking_files``.
"""

from __future__ import annotations

import argparse

NAME = "select"
HELP = "rank candidate backbones for a recipe's data: a cross-validated probe on the training images, and each one's cost"
DEFAULT_FOLDS = 5  # repeated from backbone_ranking.DEFAULT_FOLDS (a torch module, not for --help)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="the recipe whose data (train and validation images; never test) ranks the backbones")
    parser.add_argument("--backbones", metavar="A,B,...",
                        help="candidates, comma-separated (default: the recipe's backbone.candidates);"
                             " transferkit list backbones --available lists those with weights here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. data.root=path/to/images")
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS, metavar="K",
                        help=f"cross-validation folds (default {DEFAULT_FOLDS})")
    parser.add_argument("--output", metavar="DIR", help="where select.json and select.csv go (default runs/select/<timestamp>)")


def run(args: argparse.Namespace) -> int:
    from .ranking_files import select  # see workbench/__init__.py: --help imports this module, not the work

    select(args.recipe, args.backbones, overrides=args.overrides, folds=args.folds, output=args.output)
    return 0
