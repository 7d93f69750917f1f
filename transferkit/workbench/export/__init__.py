"""``transferkit export RUN_DIR --format onnx|torchscript``: a finished run's classifier as an ONNX
or TorchScript file, checked against PyTorch before it is written.

The exported model takes the normalised image batch (NCHW float32: RGB, ``pixel / 255``, then
``(x - mean) / std`` after the run's resize and centre crop) and returns the logits ``[N, classes]``
(softmax them for probabilities); a multi-label run's returns each label's sigmoid probability
``[N, labels]`` instead, its JSON holding the per-label thresholds. Before anything is written, random normalised batches of the
run's image size (two batch sizes when the batch is dynamic) and a few real images through the
run's preprocessing go through PyTorch and through the export read back (onnxruntime,
``torch.jit.load``); above a max abs logit difference of 1e-4 the command fails and writes nothing.

Beside the file (``RUN_DIR/model.onnx`` or ``RUN_DIR/model.torchscript.pt`` by default) goes
``<file>.json``: the format, input and output, the preprocessing, the class names and the verified
difference. The run's own ``manifest.json`` is left as it is.

Python: ``export_run(run_dir, "onnx")`` (``transferkit.workbench.export.verified_file``) returns an ``ExportResult``.
"""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "a finished run's classifier as ONNX or TorchScript (normalised NCHW images in, logits out), verified against PyTorch"
FORMATS = ("onnx", "torchscript")  # export_run.FORMATS names their files (tests keep the two in step)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx (onnxruntime, ...) or torchscript (torch.jit.load)")
    parser.add_argument("--output", metavar="FILE", help="the exported file (default RUN_DIR/model.onnx or RUN_DIR/model.torchscript.pt)")
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch-size", type=int, metavar="N", help="a fixed batch dimension of N")
    batch.add_argument("--dynamic-batch", action="store_true", help="any batch size (the default)")
    parser.add_argument("--opset", type=int, metavar="K", help="ONNX opset version (default: the exporter's; 18 or newer)")


def run(args: argparse.Namespace) -> int:
    from .verified_file import export_run  # see workbench/__init__.py

    result = export_run(args.run_dir, args.format, output=args.output, batch_size=args.batch_size, opset=args.opset)
    m = result.manifest
    shape = ", ".join(str(d) for d in m["input"]["shape"])
    what = f"opset {m['opset']}, " if m.get("opset") else ""
    print(
        f"exported {result.path} ({result.format}, {what}input {m['input']['name']} [{shape}] float32 normalised NCHW"
        f" -> {m['output']['name']} [{m['input']['shape'][0]}, {len(m['classes'])}]): {result.size_bytes / 1e6:.2f} MB"
    )
    real = f"; {result.real_images} real images" if result.real_images else "; no real images found"
    print(
        f"verified with {m['verification']['runtime']} on batches of {', '.join(map(str, result.checked_batches))}"
        f" random inputs{real}: max abs difference {result.max_abs_diff:.3g} (tolerance {result.tolerance:g})"
    )
    print(f"manifest: {result.manifest_path}")
    return 0
