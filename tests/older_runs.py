"""A run directory as an older transferkit left it: a recipe key it did not have yet removed from
the checkpoint's stored recipe and from ``recipe.toml`` (both with their checksums), and the run
unfinished, for tests that resume it under today's defaults."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from transferkit.engine.rundir.artifacts import remove_verified, write_verified


def as_before_key(run: Path, section: str, key: str, toml_line: str) -> None:
    """Drop ``section.key`` from ``run``'s last checkpoint and ``toml_line`` from its recipe.toml;
    remove summary.json so that ``--resume`` trains on."""
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    stored = json.loads(state["recipe_json"])
    del stored[section][key]
    state["recipe_json"] = json.dumps(stored, sort_keys=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_verified(last, buffer.getvalue())
    recipe = run / "recipe.toml"
    write_verified(recipe, recipe.read_text().replace(toml_line, "").encode())
    remove_verified(run / "summary.json")
