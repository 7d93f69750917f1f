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

``validate`` needs only the backbone's figures (``BackboneProfile``: bytes per pixel, parameters,
stages), not the backbone: for the built-in timm and torchvision backbones they are kept in the
cache folder per library version, so that validating a recipe imports no torch after the first
time (on a machine without an NVIDIA or Apple GPU, where ``train.device = "auto"`` is the CPU).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import RecipeError
from ...recipe import AUTO_BACKBONE, Recipe, TrainConfig, with_backbone

if TYPE_CHECKING:
    from torch import nn

    from ..runtime.device import Runtime

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
    import torch

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


def device_memory(runtime: Runtime | None) -> tuple[float, str]:
    """The training device's memory in bytes, and its name in words (``None``: the CPU)."""
    if runtime is not None and runtime.device.type == "cuda":
        import torch

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


@dataclass(frozen=True)
class BackboneProfile:
    """What the estimate needs of a backbone: fp32 activation bytes per input pixel (all module
    outputs, and the largest), measured at ``side`` px; its parameters; its stages; its native side."""

    side: int
    kept: float
    largest: float
    parameters: int
    stages: int
    native: int


def measure_profile(backbone: nn.Module, size: int | None) -> BackboneProfile:
    """The profile of a built backbone for images of ``size`` px (None: its native size)."""
    from ...models.backbone import backbone_stages

    native = int(getattr(backbone, "data_config", {}).get("input_size", (3, 224, 224))[-1])
    side = min(PROBE, size or native)
    try:
        kept, largest = activation_bytes_per_pixel(backbone, 4, side)
    except Exception:  # noqa: BLE001 - a backbone that takes only its own input size: probe at that size
        side = size or native
        kept, largest = activation_bytes_per_pixel(backbone, 4, side)
    parameters = sum(p.numel() for p in backbone.parameters())
    return BackboneProfile(side, kept, largest, parameters, len(backbone_stages(backbone)), native)


def estimate_from_profile(recipe: Recipe, profile: BackboneProfile, runtime: Runtime | None) -> MemoryEstimate:
    """The estimate (see the module's doc) from a backbone's profile, on ``runtime`` (None: the CPU)."""
    size = int(recipe.data.image_size or profile.native)
    scale = 0.5 if runtime is not None and runtime.amp_dtype is not None else 1.0  # 16-bit activations
    finetune = recipe.phases.finetune
    trains_backbone = finetune.epochs > 0 and finetune.unfreeze != "none"
    per_pixel = scale * (profile.kept if trains_backbone else 2 * profile.largest)  # frozen: one layer's input and output
    available, device = device_memory(runtime)
    parameters = 4.0 * 4 * profile.parameters
    batch = recipe.data.batch_size
    return MemoryEstimate(size, batch, per_pixel * size * size * batch, parameters, device, available, per_pixel)


def estimate_training_memory(recipe: Recipe, backbone: nn.Module, runtime: Runtime | None = None) -> MemoryEstimate:
    """The memory one training step of ``recipe`` needs with ``backbone`` (see the module's doc)."""
    from ..runtime.device import resolve_runtime

    runtime = runtime or resolve_runtime(recipe.train)
    return estimate_from_profile(recipe, measure_profile(backbone, recipe.data.image_size), _gpu_only(runtime))


def _gpu_only(runtime: Runtime) -> Runtime | None:
    return runtime if runtime.device.type == "cuda" else None


def check_unfreeze(recipe: Recipe, backbone: nn.Module, origin: str = "recipe") -> None:
    """``phases.finetune.unfreeze = "last:K"`` with K above the backbone's stages: one line now
    (``validate``, ``plan``, before ``finetune`` decodes), not after phase 1 has run."""
    from ...models.backbone import backbone_stages

    check_stages(recipe, len(backbone_stages(backbone)), origin)


def check_stages(recipe: Recipe, stages: int, origin: str = "recipe") -> None:
    """``check_unfreeze`` for a backbone of ``stages`` stages."""
    policy, finetune = recipe.phases.finetune.unfreeze, recipe.phases.finetune
    if finetune.epochs and policy.startswith("last:"):
        k = int(policy[5:])
        if k > stages:
            raise RecipeError(
                f"{origin}: phases.finetune.unfreeze: last:{k} asks for more stages than {recipe.backbone.name} has"
                f' ({stages}); use last:{stages} or "all"'
            )


def check_training_memory(recipe: Recipe, backbone: nn.Module, origin: str = "recipe") -> MemoryEstimate:
    """The estimate, or one line (``RecipeError``) when the recipe cannot fit the device (or asks
    the backbone for more stages than it has: ``check_unfreeze``)."""
    check_unfreeze(recipe, backbone, origin)
    return _refuse_misfit(estimate_training_memory(recipe, backbone), origin)


def _refuse_misfit(found: MemoryEstimate, origin: str) -> MemoryEstimate:
    if not found.fits:
        largest = found.largest_size()
        hint = f"about {largest} px fits at this batch size" if largest >= 16 else "lower data.batch_size"
        raise RecipeError(
            f"{origin}: data.image_size = {found.image_size} needs {found.describe()}; lower data.image_size or"
            f" data.batch_size ({hint})"
        )
    return found


def check_recipe_memory(recipe: Recipe, origin: str = "recipe") -> MemoryEstimate:
    """``check_training_memory`` from the backbone's profile (``recipe_profile``: built without
    weights, no download; cached for the built-in backbones) on the recipe's device; with
    ``backbone.name = "auto"`` every candidate's, the largest returned."""
    if recipe.backbone.name == AUTO_BACKBONE:
        estimates = [check_recipe_memory(with_backbone(recipe, name), f"{origin}: backbone.candidates {name!r}")
                     for name in recipe.backbone.candidates]
        return max(estimates, key=lambda found: found.total)
    profile = recipe_profile(recipe)
    check_stages(recipe, profile.stages, origin)
    return _refuse_misfit(estimate_from_profile(recipe, profile, training_gpu(recipe.train)), origin)


def training_gpu(cfg: TrainConfig) -> Runtime | None:
    """The runtime when training would run on a GPU, None for the CPU: without torch where this
    machine has no NVIDIA or Apple GPU to find (``auto`` is then the CPU) or the recipe says cpu."""
    if cfg.device == "cpu" or (cfg.device == "auto" and "torch" not in sys.modules and not _gpu_possible()):
        return None
    from ..runtime.device import resolve_runtime

    return _gpu_only(resolve_runtime(cfg))


def _gpu_possible() -> bool:
    return sys.platform == "darwin" or any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/dxg").exists()


# -- the built-in backbones' profiles, cached ------------------------------------------------------
CACHED_PROVIDERS = ("transferkit.builtin.backbones",)  # whose backbones change only with the libraries' versions


def recipe_profile(recipe: Recipe) -> BackboneProfile:
    """The profile of the recipe's backbone for its image size: from the cache folder when a
    built-in backbone's was measured before with these library versions, else measured (and kept)."""
    from ...plugins import registry

    spec = recipe.backbone
    entry = registry("backbone").get(spec.name)
    key = None
    if entry.provider in CACHED_PROVIDERS:
        from ...builtin.backbone_catalog import library_version

        versions = [library_version(d) for d in ("transferkit", "timm", "torchvision", "torch")]
        key = json.dumps([spec.name, spec.params, spec.readout, recipe.data.image_size, versions], sort_keys=True, default=str)
    found = _cached(key) if key else None
    if found is None:
        from ...models.backbone import create_backbone

        found = measure_profile(create_backbone(spec.name, weights="none", readout=spec.readout, **spec.params), recipe.data.image_size)
        if key:
            _keep(key, found)
    return found


def _profiles_file() -> Path:
    from ...builtin.backbone_catalog import cache_dir

    return cache_dir() / "memory-profiles.json"


def _read_profiles() -> dict[str, Any]:
    try:
        data = json.loads(_profiles_file().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _cached(key: str) -> BackboneProfile | None:
    try:
        return BackboneProfile(**_read_profiles()[key])
    except (KeyError, TypeError):
        return None


def _keep(key: str, profile: BackboneProfile) -> None:
    from ...builtin.backbone_catalog import write_json

    profiles = _read_profiles()
    profiles[key] = asdict(profile)
    write_json(_profiles_file(), dict(list(profiles.items())[-200:]))  # the newest 200
