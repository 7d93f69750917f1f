"""Checkpoint averaging: the elementwise mean of a run's top-N epoch weights, written as a new
loadable model directory. A run keeps them with ``train.keep_checkpoints = N``; transferkit's
``RunDir`` lists them (best first) and writes the new model folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Mapping, Sequence

import torch

from transferkit import RunDir, TransferkitError


def average_state_dicts(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Elementwise mean of floating tensors (in float64, cast back); integer tensors (e.g.
    BatchNorm's num_batches_tracked) are taken from the first state."""
    if not states:
        raise ValueError("nothing to average")
    keys = list(states[0])
    for i, state in enumerate(states[1:], start=2):
        if list(state) != keys:
            raise ValueError(f"state {i} has different keys from state 1")
    out = {}
    for key in keys:
        first = states[0][key]
        if first.is_floating_point():
            total = sum(s[key].to(torch.float64) for s in states)
            out[key] = (total / len(states)).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


def average_top_checkpoints(run_dir: str | Path, top: int, output: str | Path | None = None) -> tuple[Path, list[dict]]:
    """Average the ``top`` best kept checkpoints of ``run_dir`` into ``output`` (default
    ``RUN_DIR/average-top{N}``), a directory ``transferkit evaluate`` and ``load`` accept."""
    run = RunDir(run_dir)
    kept = run.kept_checkpoints()
    if not kept:
        raise TransferkitError(f"{run.path}: no kept checkpoints; train with train.keep_checkpoints = N to keep the best N epochs")
    if top < 1 or top > len(kept):
        raise TransferkitError(f"--top {top}: the run kept {len(kept)} checkpoints; choose 1..{len(kept)}")
    chosen = kept[:top]
    averaged = average_state_dicts([k.state_dict() for k in chosen])
    out = run.write_model_folder(Path(output) if output else run.path / f"average-top{top}", averaged)
    sources = [{"file": k.path.name, "phase": k.phase, "epoch": k.epoch, "score": k.score} for k in chosen]
    (out.path / "averaged_from.json").write_text(json.dumps(sources, indent=2) + "\n")
    return out.path, sources


def configure_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument("--top", type=int, default=3, metavar="N", help="how many of the best kept epochs (default 3)")
    parser.add_argument("--output", metavar="DIR", help="default RUN_DIR/average-topN")


def run_command(args: argparse.Namespace) -> int:
    out, chosen = average_top_checkpoints(args.run_dir, args.top, args.output)
    shown = ", ".join(f"{e['phase']} epoch {e['epoch']} ({e['score']:.4f})" for e in chosen)
    print(f"averaged {len(chosen)} checkpoints: {shown}")
    print(f"wrote {out}; evaluate it with: transferkit evaluate {out}")
    return 0
