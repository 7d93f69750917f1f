"""Checkpoint averaging: the elementwise mean of a run's top-N epoch weights, or a greedy soup of
them, written as a new loadable model directory. A run keeps them with
``train.keep_checkpoints = N``; transferkit's ``RunDir`` lists them (best first) and writes the
new model folder.

Greedy soup (Wortsman et al. 2022, "Model soups"): take the kept epochs best first; add each to
the soup only if the soup's validation accuracy does not drop. The soup therefore never scores
below its first (best) ingredient on validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import torch

import transferkit
from transferkit import RunDir, TransferkitError


def average_state_dicts(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Elementwise mean of floating tensors (in float64, cast back); integer tensors (e.g.
    BatchNorm's num_batches_tracked) are taken from the first state."""
    if not states:
        raise ValueError("nothing to average")
    keys = list(states[0])
    for i, state in enumerate(states[1:], start=2):
        if set(state) != set(keys):  # the same tensors; their order may differ (a phase-1 probe's state)
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


def greedy_soup(run_dir: str | Path, output: str | Path | None = None) -> tuple[Path, list[dict]]:
    """A greedy soup of the run's kept checkpoints, judged on the run's validation split, written
    to ``output`` (default ``RUN_DIR/greedy-soup``). Returns the folder and one record per
    ingredient tried (``added``, the soup's validation accuracy with it)."""
    run = RunDir(run_dir)
    kept = run.kept_checkpoints()
    if not kept:
        raise TransferkitError(f"{run.path}: no kept checkpoints; train with train.keep_checkpoints = N to keep the best N epochs")
    trained = transferkit.load(run.path)

    def val_top1(states: list[dict[str, torch.Tensor]]) -> float:
        # one network: a run that ended with the probe + fine-tuned ensemble evaluates it at its own preprocessing
        soup = trained.with_weights(average_state_dicts(states))
        return float(transferkit.evaluate(run.path, split="val", model=soup)["top1"])

    soup = [kept[0].state_dict()]
    score = val_top1(soup)
    tried = [{"file": kept[0].path.name, "phase": kept[0].phase, "epoch": kept[0].epoch, "added": True, "soup_val_top1": score}]
    for entry in kept[1:]:
        candidate = soup + [entry.state_dict()]
        trial = val_top1(candidate)
        added = trial >= score
        if added:
            soup, score = candidate, trial
        tried.append({"file": entry.path.name, "phase": entry.phase, "epoch": entry.epoch, "added": added, "soup_val_top1": trial})
    out = run.write_model_folder(Path(output) if output else run.path / "greedy-soup", average_state_dicts(soup))
    (out.path / "averaged_from.json").write_text(json.dumps(tried, indent=2) + "\n")
    return out.path, tried
