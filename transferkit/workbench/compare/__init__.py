"""``transferkit compare RUN_A RUN_B``: two finished runs on the same images (RUN_A's test split,
or --data): accuracy, macro-F1, McNemar's exact test, per-class differences; for two multi-label
runs, macro mAP with a paired bootstrap interval and per-label differences. The work is in
``paired`` and ``multilabel``."""

from __future__ import annotations

import argparse

NAME = "compare"
HELP = ("compare two finished runs on the same images: accuracy, McNemar's exact test, per-class accuracy differences"
        " (multi-label runs: macro mAP, a bootstrap interval, per-label differences)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A")
    parser.add_argument("run_b", metavar="RUN_B")
    parser.add_argument("--data", metavar="DIR_OR_CSV",
                        help="compare on these images (a folder of class folders, or a CSV manifest) instead of RUN_A's test split")
    parser.add_argument("--split", choices=["test", "val"], help="RUN_A's split to compare on (default: test, else val)")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="classes (or labels) listed (default 10)")


def run(args: argparse.Namespace) -> int:
    from .paired import compare_runs, format_comparison  # see workbench/__init__.py

    print(f"comparing {args.run_a} and {args.run_b} ...", flush=True)
    print(format_comparison(compare_runs(args.run_a, args.run_b, args.data, args.split), top=max(0, args.top)))
    return 0
