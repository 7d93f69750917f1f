"""The two export formats of ``transferkit export``: each turns the classifier into bytes (nothing
is written here) and reads those bytes back into a runner, ``runner(images) -> logits``, that the
verification compares with PyTorch.

- ONNX: ``torch.onnx.export(..., dynamo=True)`` (torch.export, then onnxscript's translation; the
  default exporter of recent PyTorch), optionally with a dynamic batch dimension; checked by
  ``onnx.checker`` and run by onnxruntime on the CPU.
- TorchScript: ``torch.jit.trace`` in eval mode, saved with ``torch.jit.save``, run by
  ``torch.jit.load``. A traced convolutional classifier accepts any batch size.

The output is named ``logits``, or for a multi-label run's graph ``probabilities`` (``task_output``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ...errors import TransferkitError

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
Runner = Callable[[torch.Tensor], np.ndarray]


@dataclass
class Serialized:
    """An exported model in memory, with what its manifest should say about how it was made."""

    data: bytes
    details: dict[str, Any] = field(default_factory=dict)


def require_onnx() -> None:
    """One line naming the missing package and the extra that installs it."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            raise TransferkitError(
                f"--format onnx: the {module} package is not installed; pip install 'transferkit[export]'"
                " (onnx, onnxscript, onnxruntime), or use --format torchscript"
            ) from None


def export_onnx(
    model: nn.Module, example: torch.Tensor, *, dynamic_batch: bool, opset: int | None, output_name: str = OUTPUT_NAME
) -> Serialized:
    """The ONNX bytes of ``model`` (input ``images`` NCHW float32, output ``output_name``)."""
    import onnx

    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_loggers("torch.onnx", "torch.export", "onnxscript"):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[output_name],
                dynamic_shapes=dynamic_shapes, opset_version=opset, external_data=False, verbose=False,
            )
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; all end here as one line
        hint = " (--opset: the dynamo exporter targets opset 18 and newer)" if opset is not None and opset < 18 else ""
        raise TransferkitError(
            f"--format onnx: torch.onnx.export failed{hint}: {type(exc).__name__}: {_first_line(exc)};"
            " try another --opset, --batch-size N instead of a dynamic batch, or --format torchscript"
        ) from None
    proto = program.model_proto
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001
        raise TransferkitError(f"--format onnx: the exported graph does not pass onnx.checker: {_first_line(exc)}") from None
    opsets = {entry.domain or "ai.onnx": int(entry.version) for entry in proto.opset_import}
    made = opsets.get("ai.onnx")
    if opset is not None and made != opset:
        raise TransferkitError(
            f"--opset {opset}: torch.onnx.export could not convert the model to opset {opset} (it gave opset {made});"
            f" use --opset {made} or newer, or leave --opset out"
        )
    return Serialized(proto.SerializeToString(), {"opset": made, "exporter": f"torch.onnx.export (dynamo) {torch.__version__}"})


def onnx_runner(data: bytes, output_name: str = OUTPUT_NAME) -> tuple[Runner, str]:
    """An onnxruntime session (CPU) over the ONNX bytes (returning output ``output_name``), and
    what it is, in words."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.log_severity_level = 3
    session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> np.ndarray:
        return session.run([output_name], {INPUT_NAME: images.detach().cpu().contiguous().numpy()})[0]

    return run, f"onnxruntime {ort.__version__} (CPUExecutionProvider)"


def export_torchscript(model: nn.Module, example: torch.Tensor) -> Serialized:
    """The TorchScript bytes of ``model``, traced on ``example`` in eval mode."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, (example,), check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer)
    except Exception as exc:  # noqa: BLE001
        raise TransferkitError(
            f"--format torchscript: torch.jit.trace failed: {type(exc).__name__}: {_first_line(exc)}; try --format onnx"
        ) from None
    return Serialized(buffer.getvalue(), {"exporter": f"torch.jit.trace {torch.__version__}"})


def torchscript_runner(data: bytes) -> tuple[Runner, str]:
    """The TorchScript module read back from its bytes with ``torch.jit.load``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    module.eval()

    def run(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(images.detach().cpu().contiguous()).float().numpy()

    return run, f"torch.jit.load {torch.__version__}"


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """The exporter logs progress, fallbacks and caught tracebacks; its outcome is checked here."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
