"""The work of ``transferkit select``: rank the candidates (``backbone_ranking``), print the
table and the recommendation, write ``select.json`` and ``select.csv``.

Python: ``ranking = select("recipes/flowers.toml", "timm/tf_efficientnet_lite0,timm/tf_efficientnet_lite2",
overrides=["data.root=photos"])``; ``ranking.best.backbone`` is the recommendation.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from ...engine.preflight.backbone_ranking import DEFAULT_FOLDS, BackboneRanking, rank_backbones
from ...engine.rundir.artifacts import atomic_write
from ...engine.rundir.run_dir import RunDir
from ...errors import RecipeError, UsageError
from ...recipe import AUTO_BACKBONE, with_backbone
from ...recipe_loading import RecipeSource, load_recipe

COLUMNS = ("rank", "backbone", "native_size", "cv_top1", "cv_log_loss", "log_loss_gap", "log_loss_gap_se", "C",
           "feature_images_per_s", "train_images_per_s", "parameters", "train_memory_gb", "seconds")


def candidate_names(backbones: str | Sequence[str] | None, recipe_candidates: Sequence[str], origin: str) -> list[str]:
    """``--backbones`` as a list, else the recipe's ``backbone.candidates``."""
    if backbones is None:
        if not recipe_candidates:
            raise UsageError(f"{origin}: no candidates: give --backbones A,B (transferkit list backbones --available"
                             " lists those with weights here), or backbone.candidates with backbone.name = \"auto\"")
        return list(recipe_candidates)
    names = [n.strip() for n in backbones.split(",")] if isinstance(backbones, str) else list(backbones)
    if any(not n for n in names):
        raise UsageError(f"--backbones {backbones!r}: an empty name; separate names by single commas")
    return names


def select(
    recipe: RecipeSource, backbones: str | Sequence[str] | None = None, *, overrides: Sequence[str] = (),
    folds: int = DEFAULT_FOLDS, output: str | Path | None = None, log: Callable[[str], None] | None = print,
) -> BackboneRanking:
    """Rank the candidate backbones on the recipe's training and validation images; write
    ``select.json`` and ``select.csv`` into ``output`` (default ``runs/select/<timestamp>``)."""
    say = log or (lambda _m: None)
    if folds < 2:
        raise UsageError(f"--folds {folds}: give 2 or more")
    resolved = load_recipe(recipe, list(overrides))
    names = candidate_names(backbones, resolved.backbone.candidates, str(recipe))
    if resolved.backbone.name == AUTO_BACKBONE:  # the data and settings are the recipe's; the candidates these
        resolved = with_backbone(resolved, names[0])
    target = Path(output) if output is not None else RunDir.timestamped("select")
    if target.exists() and any(target.iterdir()):
        raise RecipeError(f"--output {target}: exists and is not empty; choose a new folder")
    say(f"select: {len(names)} candidate{'s' if len(names) > 1 else ''} on {resolved.data.root or resolved.data.source}'s training images")
    ranking = rank_backbones(resolved, names, folds=folds, log=say)
    write_ranking(ranking, target)
    for line in table_lines(ranking):
        say(line)
    say(f"recommended: {ranking.why}")
    say(f"use it: --set backbone.name={ranking.best.backbone}; files: {target / 'select.json'}, select.csv")
    return ranking


def table_lines(ranking: BackboneRanking) -> list[str]:
    header = ("rank", "backbone", "size", "CV top-1", "CV log-loss", "vs first", "features/s", "train img/s", "params", "memory")
    rows = [(str(c.rank), c.backbone, str(c.native_size), f"{c.cv_top1:.4f}", f"{c.cv_log_loss:.4f}",
             "-" if c.rank == 1 else f"{c.log_loss_gap:+.4f} ± {c.log_loss_gap_se:.4f}", f"{c.feature_images_per_s:.1f}",
             f"{c.train_images_per_s:.1f}", f"{c.parameters / 1e6:.1f}M", f"{c.train_memory_gb:.2f} GB") for c in ranking.candidates]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [f"{ranking.images} labelled images ({' + '.join(ranking.splits_used)}; the test split is not read),"
             f" {ranking.classes} classes, {ranking.folds}-fold probes at each backbone's native size, {ranking.seconds:.0f} s"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in (header, *rows)]
    return lines


def write_ranking(ranking: BackboneRanking, target: Path) -> None:
    data = ranking.to_dict()
    atomic_write(target / "select.json", lambda fh: fh.write(json.dumps(data, indent=1).encode()))
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    for c in ranking.candidates:
        row = asdict(c)
        writer.writerow([round(row[k], 5) if isinstance(row[k], float) else row[k] for k in COLUMNS])
    atomic_write(target / "select.csv", lambda fh: fh.write(text.getvalue().encode()))
