"""The work of ``transferkit suggest``: the run's model on a pool of unlabelled images (its
features and calibrated probabilities), the run's labelled images' features, then ``picking.pick``.

A pool image that is one of the run's own images (train, validation or test, by path) is refused:
the pool is for images nobody labelled. A byte-identical copy of one is left out and counted.
Nothing is written into the pool. Python: ``suggest("runs/flowers/...", "unlabelled/", 50)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...data.image_files import byte_copies
from ...engine.evaluation.predict import inference_runtime
from ...engine.rundir.run_dir import RunDir
from ...engine.training.feature_cache import FeatureCache
from ...errors import DataError, UsageError
from ...inference import InputImages, TrainedModel, image_files, load
from .picking import Picked, pick
from .sheet import write_suggestions

BATCH = 64


@dataclass
class Suggestions:
    """The picked pool images, most useful first, with the model's answer for each."""

    paths: list[Path]  # the pool images in the order picked
    labels: list[str]  # the model's most likely class
    probabilities: np.ndarray  # its probability
    picked: Picked
    pool_size: int
    labelled: int  # the run's labelled images the novelty was measured against
    left_out: list[Path] = field(default_factory=list)  # byte-identical copies of the run's images
    output: Path | None = None
    seconds: float = 0.0


def run_images(run: RunDir) -> dict[str, list[Path]]:
    """The run's image files by split (``splits.csv``), as absolute paths."""
    out: dict[str, list[Path]] = {}
    for row in run.read_splits():
        image = Path(row["image"])
        if image.is_absolute():
            out.setdefault(row["split"], []).append(image)
    return out


def pool_files(pool: str | Path, own: dict[str, list[Path]]) -> tuple[list[Path], list[Path]]:
    """The pool's image files, and those left out as copies of the run's images; refused when empty
    or when it holds the run's own files."""
    folder = Path(pool)
    if not folder.is_dir():
        raise DataError(f"--pool {pool}: not a folder; give a folder of unlabelled images")
    files = image_files([folder])
    if not files:
        raise DataError(f"--pool {pool}: no image files in it (.jpg, .png, ...); give a folder of unlabelled images")
    labelled = {p.resolve(): split for split, paths in own.items() for p in paths}
    inside = [f for f in files if f.resolve() in labelled]
    if inside:
        splits = sorted({labelled[f.resolve()] for f in inside})
        raise DataError(f"--pool {pool}: {len(inside)} of its images are the run's own {'/'.join(splits)} images"
                        f" (first: {inside[0]}); give a folder of images nobody labelled yet")
    copies = byte_copies(files, [p for paths in own.values() for p in paths])
    kept = [f for f in files if f not in copies]
    if not kept:
        raise DataError(f"--pool {pool}: every image in it is a copy of one of the run's images; nothing left to label")
    return kept, sorted(copies)


def features_and_probs(model: TrainedModel, files: list[Path], desc: str) -> tuple[np.ndarray, np.ndarray]:
    images = InputImages(files, model.classes, model.decode_side)
    runtime = inference_runtime(model.model)
    cache = FeatureCache.compute(model.model.backbone, images, model.preprocessing, runtime, batch_size=BATCH, desc=desc)
    features = cache.features[0]
    with torch.inference_mode():
        logits = model.model.forward_head(features.to(model.model.head.weight.device))
        probs = torch.softmax(logits.float().cpu() / model.temperature, dim=1)
    return features.numpy(), probs.numpy()


def suggest(
    run_dir: str | Path, pool: str | Path, count: int, *, output: str | Path | None = None,
    log: Callable[[str], None] | None = print,
) -> Suggestions:
    """Rank ``pool``'s images for labelling with the run's model; write ``suggest.csv`` and
    ``suggest.html`` into ``output`` (default ``runs/suggest/<timestamp>``)."""
    say = log or (lambda _m: None)
    started = time.perf_counter()
    if not isinstance(count, int) or count < 1:
        raise UsageError(f"--count {count}: give 1 or more (how many images to suggest)")
    model = load(run_dir)
    own = run_images(RunDir(run_dir))
    files, copies = pool_files(pool, own)
    target = Path(output) if output is not None else RunDir.timestamped("suggest")
    if Path(pool).resolve() in (target.resolve(), *target.resolve().parents):
        raise DataError(f"--output {target}: inside the pool {pool}; choose a folder outside it")
    labelled_files = [p for split in ("train", "val") for p in own.get(split, []) if p.is_file()]
    pool_x, pool_p = features_and_probs(model, files, "pool features")
    labelled_x = features_and_probs(model, labelled_files, "labelled features")[0] if labelled_files else np.zeros((0, pool_x.shape[1]))
    picked = pick(pool_x, pool_p, labelled_x, count)
    best = pool_p[picked.order].argmax(1)
    result = Suggestions([files[i] for i in picked.order], [model.classes[c] for c in best],
                         pool_p[picked.order, best], picked, len(files), len(labelled_files), copies)
    result.output = target
    write_suggestions(result, target, str(run_dir))
    result.seconds = time.perf_counter() - started
    copies_note = f"; {len(copies)} copies of the run's images left out" if copies else ""
    say(f"suggest: {len(result.paths)} of {len(files)} pool images, ranked by uncertainty x novelty against"
        f" {len(labelled_files)} labelled images{copies_note}, {result.seconds:.0f} s")
    for i in range(min(5, len(result.paths))):
        say(f"  {i + 1}. {result.paths[i]}: {result.labels[i]}? (p {result.probabilities[i]:.2f},"
            f" margin {picked.margins[i]:.2f}, novelty {picked.novelty[i]:.3f})")
    say(f"fill in the label column of {target / 'suggest.csv'}; contact sheet: {target / 'suggest.html'}")
    return result
