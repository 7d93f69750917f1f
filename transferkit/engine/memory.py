"""Will a recipe's images fit the device? An estimate of the memory a training step needs, so
that ``data.image_size = 4000`` fails in ``validate`` and ``plan`` (and before ``finetune`` decodes
anything) with the figures, instead of dying out of memory minutes later.

Activation memory grows with the pixels of an image: the backbone runs once on a small probe
image (no gradients), every module's output is counted, and the sum is scaled by
``(image_size / probe)**2`` and the batch (when the backbone only runs frozen, the two largest
outputs instead). Parameters count four times (weights, gradients and AdamW's two moments). The
sum of module outputs is about what autograd keeps for the backward pass: for EfficientNet-Lite0
at 224 px and a batch of 16 it says 1.50 GB where a CPU training step peaked at 1.58 GB. It is
compared with the whole device memory (a GPU's, or the machine's RAM); a recipe over it is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import RecipeError
from ..models.backbone import backbone_stages, create_backbone
from ..recipe import Recipe
from .runtime import Runtime, resolve_runtime

PROBE = 64  # the side of the probe image (pixels)
GB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    """The bytes one training step needs, split into activations and parameter state."""

    image_size: int
    batch_size: int
    activations: float
    parameters: float
    device: str
    available: float  # the device's memory (bytes)
    per_pixel: float  # activation bytes per image pixel (what scaling the size changes)

    @property
    def total(self) -> float:
        return self.activations + self.parameters

    @property
    def fits(self) -> bool:
        return self.total <= self.available

    def largest_size(self) -> int:
        """The largest image size whose estimate fits at this batch size (0 when none does)."""
        room = self.available - self.parameters
        if room <= 0:
            return 0
        return int((room / (self.batch_size * self.per_pixel)) ** 0.5)

    def describe(self) -> str:
        return (f"about {self.total / GB:.1f} GB for a training batch of {self.batch_size} at {self.image_size} px"
                f" (activations {self.activations / GB:.1f} GB, parameters and optimizer state {self.parameters / GB:.2f} GB);"
                f" the {self.device} has {self.available / GB:.1f} GB")


def activation_bytes_per_pixel(backbone: nn.Module, bytes_per_value: int = 4, side: int = PROBE) -> tuple[float, float]:
    """Bytes of module outputs per input pixel, from one forward of a ``side`` px image on the CPU:
    all of them (kept for a backward pass), and the largest one."""
    total, largest = 0, 0

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total, largest
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * bytes_per_value
                largest = max(largest, tensor.numel() * bytes_per_value)

    hooks = [m.register_forward_hook(count) for m in backbone.modules() if not list(m.children())]
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            backbone(torch.zeros(1, 3, side, side))
    finally:
        for hook in hooks:
            hook.remove()
        backbone.train(was_training)
    return total / (side * side), largest / (side * side)


def device_memory(runtime: Runtime) -> tuple[float, str]:
    """The training device's memory in bytes, and its name in words."""
    if runtime.device.type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(runtime.device)
        return float(props.total_memory), f"GPU {props.name}"
    physical = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return min(physical, _cgroup_limit()), "machine's RAM (CPU training)"


def _cgroup_limit() -> float:
    """A container's memory limit (cgroup v2 or v1), or infinity."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return float(text)
    return float("inf")


def estimate_training_memory(recipe: Recipe, backbone: nn.Module, runtime: Runtime | None = None) -> MemoryEstimate:
    """The memory one training step of ``recipe`` needs with ``backbone`` (see the module's doc)."""
    runtime = runtime or resolve_runtime(recipe.train)
    size = int(recipe.data.image_size or getattr(backbone, "data_config", {}).get("input_size", (3, 224, 224))[-1])
    bytes_per_value = 2 if runtime.amp_dtype is not None else 4
    try:
        kept, largest = activation_bytes_per_pixel(backbone, bytes_per_value, min(PROBE, size))
    except Exception:  # noqa: BLE001 - a backbone that takes only its own input size: probe at that size
        kept, largest = activation_bytes_per_pixel(backbone, bytes_per_value, size)
    finetune = recipe.phases.finetune
    trains_backbone = finetune.epochs > 0 and finetune.unfreeze != "none"
    per_pixel = kept if trains_backbone else 2 * largest  # frozen: one layer's input and output at a time
    available, device = device_memory(runtime)
    parameters = 4.0 * 4 * sum(p.numel() for p in backbone.parameters())
    batch = recipe.data.batch_size
    return MemoryEstimate(size, batch, per_pixel * size * size * batch, parameters, device, available, per_pixel)


def check_unfreeze(recipe: Recipe, backbone: nn.Module, origin: str = "recipe") -> None:
    """``phases.finetune.unfreeze = "last:K"`` with K above the backbone's stages: one line now
    (``validate``, ``plan``, before ``finetune`` decodes), not after phase 1 has run."""
    policy, finetune = recipe.phases.finetune.unfreeze, recipe.phases.finetune
    if finetune.epochs and policy.startswith("last:"):
        k, stages = int(policy[5:]), len(backbone_stages(backbone))
        if k > stages:
            raise RecipeError(
                f"{origin}: phases.finetune.unfreeze: last:{k} asks for more stages than {recipe.backbone.name} has"
                f' ({stages}); use last:{stages} or "all"'
            )


def check_training_memory(recipe: Recipe, backbone: nn.Module, origin: str = "recipe") -> MemoryEstimate:
    """The estimate, or one line (``RecipeError``) when the recipe cannot fit the device (or asks
    the backbone for more stages than it has: ``check_unfreeze``)."""
    check_unfreeze(recipe, backbone, origin)
    found = estimate_training_memory(recipe, backbone)
    if not found.fits:
        largest = found.largest_size()
        hint = f"about {largest} px fits at this batch size" if largest >= 16 else "lower data.batch_size"
        raise RecipeError(
            f"{origin}: data.image_size = {found.image_size} needs {found.describe()}; lower data.image_size or"
            f" data.batch_size ({hint})"
        )
    return found


def check_recipe_memory(recipe: Recipe, origin: str = "recipe") -> MemoryEstimate:
    """``check_training_memory`` with the recipe's backbone built without weights (no download)."""
    spec = recipe.backbone
    return check_training_memory(recipe, create_backbone(spec.name, weights="none", **spec.params), origin)
