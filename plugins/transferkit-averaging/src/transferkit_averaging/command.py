"""The ``average-checkpoints`` command: its arguments (no torch import: ``transferkit --help``
lists it) and its run, which imports the averaging itself (``checkpoints``)."""

from __future__ import annotations

import argparse


def configure_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument("--top", type=int, default=3, metavar="N", help="how many of the best kept epochs (default 3)")
    parser.add_argument("--greedy", action="store_true",
                        help="a greedy soup instead: every kept epoch, best first, added when validation accuracy does not drop")
    parser.add_argument("--output", metavar="DIR", help="default RUN_DIR/average-topN (RUN_DIR/greedy-soup with --greedy)")


def run_command(args: argparse.Namespace) -> int:
    from .checkpoints import average_top_checkpoints, greedy_soup  # torch: only when the command runs

    if args.greedy:
        out, tried = greedy_soup(args.run_dir, args.output)
        added = [e for e in tried if e["added"]]
        shown = ", ".join(f"{e['phase']} epoch {e['epoch']}" for e in added)
        score = added[-1]["soup_val_top1"]
        print(f"greedy soup of {len(added)} of {len(tried)} kept checkpoints ({shown}): validation accuracy {score:.4f}")
    else:
        out, chosen = average_top_checkpoints(args.run_dir, args.top, args.output)
        shown = ", ".join(f"{e['phase']} epoch {e['epoch']} ({e['score']:.4f})" for e in chosen)
        print(f"averaged {len(chosen)} checkpoints: {shown}")
    print(f"wrote {out}; evaluate it with: transferkit evaluate {out}")
    return 0
