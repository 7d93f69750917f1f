"""``transferkit audit DATA``: look for likely mislabeled images, near-duplicates, train/test
leakage and outliers in a labelled image set, before training on it.

A light shell (``transferkit --help`` imports it): the work is in ``scan`` (features and
analysis), ``label_scores``, ``similarity``, ``findings`` and ``html_csv``.
"""

from __future__ import annotations

import argparse

NAME = "audit"
HELP = "find likely mislabeled images, near-duplicates, train/test leakage and outliers in a labelled image set"
# repeated from audit_scores.DEFAULT_FOLDS and audit_similarity.FEATURE_SIMILARITY (numpy modules,
# not for --help); tests/workbench/test_commands.py keeps them in step
DEFAULT_FOLDS = 5
FEATURE_SIMILARITY = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="an ImageFolder root (root/train/<class>/..., root/test/...) or a CSV manifest")
    parser.add_argument("--recipe", metavar="R", help="recipe whose backbone and image size to use (default: the recipe defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. data.image_size=224")
    parser.add_argument("--output", metavar="DIR", help="where audit.html and audit.csv go (default runs/audit/<timestamp>)")
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS, metavar="K",
                        help=f"cross-validation folds of the label probes (default {DEFAULT_FOLDS})")
    parser.add_argument("--duplicate-similarity", type=float, default=FEATURE_SIMILARITY, metavar="S",
                        help=f"feature cosine at which two images count as the same photograph (default {FEATURE_SIMILARITY},"
                             " measured for EfficientNet-Lite0)")


def run(args: argparse.Namespace) -> int:
    from .scan import audit  # see workbench/__init__.py: --help imports this module, not the work

    audit(args.data, args.recipe, overrides=args.overrides, output=args.output, folds=args.folds,
          duplicate_similarity=args.duplicate_similarity)
    return 0
