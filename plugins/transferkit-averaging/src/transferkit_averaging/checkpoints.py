"""Checkpoint averaging: the elementwise mean of a run's top-N epoch weights, written as a new
loadable model directory. A run keeps them with ``train.keep_checkpoints = N``, which writes
``checkpoints/epoch-*.safetensors`` and ``checkpoints/index.json`` (best first)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Mapping, Sequence

import torch
from safetensors.torch import load_file, save_file

from transferkit import TransferkitError


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
    run = Path(run_dir)
    index_file = run / "checkpoints" / "index.json"
    if not index_file.is_file():
        raise TransferkitError(
            f"{run}: no checkpoints/index.json; train with train.keep_checkpoints = N to keep the best N epochs"
        )
    entries = json.loads(index_file.read_text())
    if top < 1 or top > len(entries):
        raise TransferkitError(f"--top {top}: the run kept {len(entries)} checkpoints; choose 1..{len(entries)}")
    chosen = entries[:top]
    states = [load_file(str(run / "checkpoints" / e["file"])) for e in chosen]
    averaged = average_state_dicts(states)
    out = Path(output) if output else run / f"average-top{top}"
    out.mkdir(parents=True, exist_ok=True)
    save_file(averaged, str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in ("manifest.json", "recipe.toml"):
        if (run / name).is_file():
            shutil.copyfile(run / name, out / name)
    (out / "averaged_from.json").write_text(json.dumps(chosen, indent=2) + "\n")
    return out, chosen


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
