"""Where and how tensors run: device choice, mixed precision, memory format."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import RecipeError
from ...recipe import TrainConfig


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def uses_scaler(self) -> bool:
        return self.amp_dtype == torch.float16

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def describe(self) -> str:
        amp = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else self.device.type
        return f"{name}, {amp}{', channels_last' if self.channels_last else ''}"


def resolve_runtime(cfg: TrainConfig) -> Runtime:
    """CUDA when there is one: AMP (bf16 where supported, else fp16 with a scaler) and channels_last.
    The CPU runs fp32 (its autocast would only cost time) but keeps channels_last: oneDNN's
    convolutions prefer NHWC, measured 1.5x faster for EfficientNet-Lite0 training steps and
    feature extraction on a 2-core x86 CPU (see benchmarks/RESULTS.md). On CUDA it also turns on
    ``torch.backends.cudnn.benchmark``: the input shape is fixed within a phase, so cuDNN times its
    convolution algorithms once per shape and keeps the fastest (the choice may differ between
    processes; GPU runs are not bitwise reproducible anyway, see benchmarks/gpu_stages/verdicts.py)."""
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        problem = device_problem(cfg.device)
        if problem:
            raise RecipeError(problem)
        device = torch.device(cfg.device)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # one GPU per torchrun process
    if device.type != "cuda":
        return Runtime(device, None, cfg.channels_last and device.type == "cpu")
    torch.backends.cudnn.benchmark = True
    amp = cfg.amp
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
    return Runtime(device, dtype, cfg.channels_last)


def device_problem(device: str) -> str | None:
    """Why ``train.device`` cannot run on this machine (one line with what to set instead), or None."""
    if device in ("auto", "cpu"):
        return None
    where = f"train.device = {device!r}"
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        return None if mps is not None and mps.is_available() else f"{where}: no Apple MPS device on this machine; use auto or cpu"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return f"{where}: no CUDA device on this machine; use auto or cpu"
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= count):
        names = ", ".join(f"cuda:{i}" for i in range(count))
        return f"{where}: this machine has {count} CUDA device(s) ({names}); use one of them, auto or cpu"
    return None
