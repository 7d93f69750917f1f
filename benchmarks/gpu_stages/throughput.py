"""Stage 2: the raw loop. A backbone with the engine's head, the engine's runtime (bf16 autocast
and channels_last on CUDA) and optimizer, random batches already on the device: training and
feature-extraction images/s with and without ``torch.compile``, peak GPU memory, and the
floating-point operations per image counted by PyTorch's FLOP counter."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from transferkit import create_backbone
from transferkit.engine.training.optim import build_optimizer
from transferkit.engine.runtime.device import resolve_runtime
from transferkit.models.classifier import Classifier
from transferkit.recipe import TrainConfig

from .common import Settings, backbone_name, device, peak_memory_gib, reset_peak_memory, timed_loop

CLASSES = 12  # flowers12's, so the head matches stage 3's
TRAIN_STEP_FLOPS = 3  # a training step in forward passes: forward + backward (grad input + grad weight)


def build_model(name: str, channels_last: bool) -> Classifier:
    """Random-initialised backbone + the engine's head; BatchNorm in training mode, as a
    from-scratch training step has it (stage 3 runs the engine with ``bn = "train"`` to match)."""
    model = Classifier(create_backbone(name, weights="none"), [f"class{i}" for i in range(CLASSES)])
    model.bn_eval = False
    model = model.to(device())
    return model.to(memory_format=torch.channels_last) if channels_last else model


def random_batches(settings: Settings, channels_last: bool, count: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A few distinct random batches on the device (never zeros: they can run faster than data)."""
    gen = torch.Generator(device=device()).manual_seed(0)
    out = []
    for _ in range(count):
        images = torch.randn(settings.batch, 3, settings.image_size, settings.image_size, device=device(), generator=gen)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        out.append((images, torch.randint(0, CLASSES, (settings.batch,), device=device(), generator=gen)))
    return out


def count_flops(model: Classifier, image_size: int) -> dict[str, float]:
    """Forward FLOPs per image (convolutions and matrix products, 2 per multiply-add) counted by
    PyTorch on a batch of two; a training step taken as 3x that (the backward about twice the
    forward). PyTorch's counter is not used on the backward: its weight-gradient formula ignores
    convolution groups, which inflates depthwise convolutions (EfficientNet) by their channels."""
    images = torch.randn(2, 3, image_size, image_size, device=device())
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    model.train()
    forward = counter.get_total_flops() / len(images)
    return {"forward_flops": forward, "train_flops": TRAIN_STEP_FLOPS * forward}


def raw_throughput(settings: Settings, key: str, compiled: bool) -> dict[str, Any]:
    """Training and extraction images/s of one backbone (one variant: eager or compiled)."""
    name = backbone_name(key)
    runtime = resolve_runtime(TrainConfig())
    model = build_model(name, runtime.channels_last)
    result: dict[str, Any] = {"backbone": name, "compiled": compiled, "runtime": runtime.describe(),
                              "batch": settings.batch, "image_size": settings.image_size}
    if compiled:
        result["compile_backend"] = settings.compile_backend
    else:
        result.update(count_flops(model, settings.image_size))
    batches = random_batches(settings, runtime.channels_last)

    optimizer = build_optimizer(model, 1e-3, TrainConfig())
    forward = torch.compile(model, backend=settings.compile_backend) if compiled else model
    model.train()

    def train_step(i: int) -> None:
        images, labels = batches[i % len(batches)]
        with runtime.autocast():
            logits = forward(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    reset_peak_memory()
    warm, seconds = timed_loop(train_step, settings.warmup_steps, settings.timed_steps)
    result.update(train_images_per_second=settings.batch * settings.timed_steps / seconds, train_warmup_seconds=warm,
                  train_peak_gib=peak_memory_gib())
    optimizer.zero_grad(set_to_none=True)
    del optimizer, forward
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    model.eval()
    backbone = torch.compile(model.backbone, backend=settings.compile_backend) if compiled else model.backbone

    @torch.inference_mode()
    def extract_step(i: int) -> None:
        with runtime.autocast():
            backbone(batches[i % len(batches)][0])

    reset_peak_memory()
    warm, seconds = timed_loop(extract_step, settings.warmup_steps, settings.timed_steps)
    result.update(extract_images_per_second=settings.batch * settings.timed_steps / seconds,
                  extract_warmup_seconds=warm, extract_peak_gib=peak_memory_gib())
    return result
