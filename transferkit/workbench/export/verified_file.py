"""``transferkit export RUN_DIR --format onnx|torchscript``: a finished run's classifier as an ONNX
or TorchScript file, checked against PyTorch before it is written.

The exported model takes the normalised image batch (NCHW float32: RGB, ``pixel / 255``, then
``(x - mean) / std`` after the run's resize and centre crop) and returns the logits ``[N, classes]``.
Before anything is written, random normalised batches of the run's image size (two batch sizes
when the batch is dynamic) and a few real images through the run's preprocessing go through
PyTorch and through the export read back (onnxruntime, ``torch.jit.load``); above a max abs logit
difference of 1e-4 the command fails and writes nothing.

Beside the file (``RUN_DIR/model.onnx`` or ``RUN_DIR/model.torchscript.pt`` by default) goes
``<file>.json``: the format, input and output, the preprocessing, the class names, the verified
difference, the run's temperature (``softmax(logits / temperature)`` are the calibrated
probabilities transferkit gives; 1.0 for runs from before calibration) and its rejection rule.
The run's own ``manifest.json`` is left as it is.

A multi-label run's export returns each label's sigmoid probability (output ``probabilities``),
verified as probabilities against PyTorch's, and its JSON records the task, the activation and the
per-label thresholds (``task_output``).

Python: ``export_run(run_dir, "onnx")`` returns an ``ExportResult``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...data.preprocessing import preprocessing_from_manifest
from ...data.sources import DECODE_CONTRACT, IMAGE_EXTENSIONS, read_image
from ...engine.rundir.artifacts import CHECKSUMS_FILE, atomic_write, remove_verified, write_verified
from ...engine.rundir.model_files import load_classifier
from ...engine.rundir.output_paths import check_output_file
from ...engine.rundir.run_dir import RunDir
from ...errors import TransferkitError
from ...models.classifier import Classifier
from ...recipe_loading import read_toml
from . import backends
from .task_output import agreeing, output_entries, task_output

TOLERANCE = 1e-4
FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}  # format -> default file name
EXAMPLE_BATCH = 2  # torch.export specialises sizes 0 and 1, so a dynamic batch is traced at 2
REAL_IMAGES = 4


@dataclass
class ExportResult:
    """Where the export went and how closely it matched PyTorch."""

    path: Path
    manifest_path: Path
    format: str
    max_abs_diff: float
    tolerance: float
    size_bytes: int
    checked_batches: list[int]
    real_images: int
    manifest: dict[str, Any]


def export_run(
    run_dir: str | Path,
    fmt: str,
    *,
    output: str | Path | None = None,
    batch_size: int | None = None,
    opset: int | None = None,
    tolerance: float = TOLERANCE,
) -> ExportResult:
    """Export, verify, then write the file and its manifest atomically (nothing on failure)."""
    run_path = Path(run_dir)
    if fmt not in FORMATS:
        raise TransferkitError(f"--format {fmt}: unknown; choose one of {', '.join(sorted(FORMATS))}")
    if batch_size is not None and batch_size < 1:
        raise TransferkitError(f"--batch-size {batch_size}: must be at least 1 (or leave it out for a dynamic batch)")
    if opset is not None and fmt != "onnx":
        raise TransferkitError(f"--opset {opset}: applies to --format onnx only; leave it out for --format {fmt}")
    if fmt == "onnx":
        backends.require_onnx()
    path = _output_path(run_path, fmt, output)
    for target, flag in ((path, "--output"), (path.with_name(path.name + ".json"), "--output (its .json manifest)")):
        check_output_file(target, flag)  # never over the run's own files; before anything is loaded
    model, manifest = load_run(run_path)
    exported = task_output(model, manifest)  # logits, or a multi-label run's sigmoid probabilities
    size = int(manifest["preprocessing"]["image_size"])
    dynamic = batch_size is None
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(batch_size or EXAMPLE_BATCH, 3, size, size, generator=generator)

    if fmt == "onnx":
        serialized = backends.export_onnx(exported.module, example, dynamic_batch=dynamic, opset=opset, output_name=exported.name)
        runner, runtime = backends.onnx_runner(serialized.data, output_name=exported.name)
    else:
        serialized = backends.export_torchscript(exported.module, example)
        runner, runtime = backends.torchscript_runner(serialized.data)

    batches = [example]
    if dynamic:
        batches.append(torch.randn(EXAMPLE_BATCH + 3, 3, size, size, generator=generator))
    real = real_image_batch(run_path, manifest, REAL_IMAGES)
    real_count = 0 if real is None else len(real)
    if real is not None and not dynamic:  # a fixed batch: as many images as fit, repeated to fill it
        real, real_count = real[torch.arange(batch_size) % len(real)], min(real_count, batch_size)
    worst, agree, total = 0.0, 0, 0
    for batch in batches + ([real] if real is not None else []):
        with torch.no_grad():
            expected = exported.module(batch).float().numpy()  # what was exported: like is compared with like
        got = runner(batch)
        if got.shape != expected.shape:
            raise TransferkitError(
                f"{path}: the {fmt} export returned shape {list(got.shape)}, PyTorch {list(expected.shape)}; nothing written"
            )
        diff = float(abs(got.astype("float64") - expected).max())
        worst = max(worst, diff) if math.isfinite(diff) else math.inf
        agree += agreeing(got, expected, manifest)
        total += len(batch)
    if not worst <= tolerance:
        raise TransferkitError(
            f"{path}: the {fmt} export differs from PyTorch by {worst:.3g} (max abs {exported.compared} difference; tolerance"
            f" {tolerance:g}); nothing written; try --format {'torchscript' if fmt == 'onnx' else 'onnx'}"
            + (" or another --opset" if fmt == "onnx" else "")
        )

    record = export_manifest(
        manifest, fmt, path, serialized, batch_size,
        verification={
            "max_abs_diff": worst, "tolerance": tolerance, "runtime": runtime,
            "random_batches": [len(b) for b in batches], "real_images": real_count,
            exported.agreement: agree / max(total, 1),
        },
    )
    text = json.dumps(record, indent=2) + "\n"
    manifest_path = path.with_name(path.name + ".json")
    # into a run's folder: recorded in its checksums.json like the run's files (the .json holds the sha256 anyway)
    write = write_verified if (path.parent / CHECKSUMS_FILE).is_file() else _write_plain
    write(path, serialized.data)
    try:
        write(manifest_path, text.encode())
    except BaseException:
        remove_verified(path)  # no export without its manifest
        raise
    return ExportResult(
        path, manifest_path, fmt, worst, tolerance, len(serialized.data), [len(b) for b in batches],
        real_count, record,
    )


def _write_plain(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def _output_path(run_path: Path, fmt: str, output: str | Path | None) -> Path:
    if output is None:
        return run_path / FORMATS[fmt]
    path = Path(output)
    return path / FORMATS[fmt] if path.is_dir() else path


def load_run(run_path: Path) -> tuple[Classifier, dict[str, Any]]:
    """The run's classifier (eval mode, float32, CPU) and manifest, verified against their recorded
    sha256 (``load_classifier``); a missing, unfinished or corrupt run directory is one line naming
    the file."""
    model, manifest = load_classifier(run_path)
    return model.float().eval(), manifest


def real_image_batch(run_path: Path, manifest: dict[str, Any], limit: int) -> torch.Tensor | None:
    """Up to ``limit`` images from the run's ``data.root`` (one per folder, sorted), through the
    manifest's evaluation preprocessing; None when the folder is not at hand."""
    try:
        root = read_toml(RunDir(run_path).recipe_file).get("data", {}).get("root")
    except Exception:  # noqa: BLE001 - no recipe, no real images
        return None
    if not root or not Path(root).is_dir():
        return None
    files: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        picked = sorted(n for n in names if n.lower().endswith(IMAGE_EXTENSIONS))[:1]
        files += [Path(folder) / n for n in picked]
        if len(files) >= limit:
            break
    transform = preprocessing_from_manifest(manifest)
    tensors = []
    for file in files:
        try:
            tensors.append(transform(read_image(file)))
        except Exception:  # noqa: BLE001 - an unreadable file is the training run's concern, not the export's
            continue
    return torch.stack(tensors) if tensors else None


def export_manifest(
    manifest: dict[str, Any], fmt: str, path: Path, serialized: Any, batch_size: int | None, *, verification: dict[str, Any]
) -> dict[str, Any]:
    """What a consumer of the exported file needs: input, output (and how to read it: ``task_output``),
    preprocessing, classes."""
    pre = dict(manifest["preprocessing"])
    pre.setdefault("interpolation", manifest.get("data_config", {}).get("interpolation", "bicubic"))
    size = int(pre["image_size"])
    batch: int | str = batch_size if batch_size is not None else "batch"
    return {
        "format": fmt,
        "file": path.name,
        "sha256": hashlib.sha256(serialized.data).hexdigest(),
        "bytes": len(serialized.data),
        **({"opset": serialized.details.get("opset")} if fmt == "onnx" else {}),
        "exporter": serialized.details.get("exporter"),
        "input": {
            "name": "images", "shape": [batch, 3, size, size], "dtype": "float32", "layout": "NCHW",
            "values": "RGB, pixel / 255, then (x - mean) / std per channel, after the preprocessing below",
        },
        **output_entries(manifest, batch),
        "decode": DECODE_CONTRACT,  # how an image file becomes the uint8 RGB "pixel" above (16-bit, float, alpha...)
        "preprocessing": pre,
        "classes": list(manifest["classes"]),
        "backbone": manifest.get("backbone"),
        "verification": verification,
    }
