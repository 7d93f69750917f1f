"""``transferkit report RUN_DIR``: a self-contained HTML page and Markdown about a finished run.
The work is in ``content`` (gathering and predicting) and ``html_markdown`` (writing)."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "a self-contained HTML page (and Markdown) about a finished run: curves, confusion matrix, per-class scores, wrong images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--output", metavar="FILE",
                        help="the HTML file (default RUN_DIR/report.html); the Markdown and its PNGs go beside it")
    parser.add_argument("--top-wrong", type=int, default=16, metavar="N",
                        help="how many confidently wrong images to show (default 16)")
    parser.add_argument("--data", metavar="DIR_OR_CSV",
                        help="predict on this ImageFolder root (its test/ or val/ when present) or CSV manifest instead of the run's split")


def run(args: argparse.Namespace) -> int:
    from .content import build_report  # see workbench/__init__.py: --help imports this module, not the work

    build_report(args.run_dir, args.output, data=args.data, top_wrong=args.top_wrong)
    return 0
