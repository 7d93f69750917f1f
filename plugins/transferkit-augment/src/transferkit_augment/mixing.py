"""Batch-level augmentations: Mixup (Zhang et al., 2018), CutMix (Yun et al., 2019), and a switch
between the two, each with optional label smoothing.

Contract (transferkit ``kind="batch"``): ``aug(images, targets) -> (images, targets)`` on the
training device; images float ``[N, 3, H, W]`` (already normalised), targets float ``[N, C]``
(one-hot or soft). Shapes and dtypes are kept, the inputs are not modified in place, and any N
works (including odd N and N = 1).

Partners: sample i is mixed with sample N-1-i (``images.flip(0)``, as timm). For odd N the
middle sample is its own partner, so its image and targets stay consistent.

Order: label smoothing first, ``targets * (1 - eps) + eps / C``, then mixing, so the mixed
targets still sum to 1. Pass ``label_smoothing`` here *or* in the trainer, not both.

Randomness: each augmentation owns a CPU ``torch.Generator`` (``.generator``) seeded by ``seed``;
with ``seed=None`` the seed is drawn from torch's global generator when the augmentation is
created, so a run seeded with ``torch.manual_seed`` is reproducible. ``state_dict()`` /
``load_state_dict()`` save and restore the generator (exact resume). The Beta draws use
Marsaglia-Tsang gamma sampling on that generator (``torch.distributions`` takes no generator).
"""

from __future__ import annotations

import math
from typing import Any

import torch


# -- sampling on an owned generator ------------------------------------------------------------------
def _uniform(generator: torch.Generator) -> float:
    """U(0, 1), never exactly 0."""
    return max(torch.rand((), generator=generator, dtype=torch.float64).item(), 1e-300)


def sample_log_gamma(shape: float, generator: torch.Generator) -> float:
    """log X for X ~ Gamma(shape, 1) (Marsaglia & Tsang 2000; shape < 1 by the U^(1/shape) boost)."""
    if shape <= 0:
        raise ValueError(f"the gamma shape must be > 0, got {shape!r}")
    boost = 0.0
    if shape < 1.0:
        boost = math.log(_uniform(generator)) / shape  # log of U^(1/shape)
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = torch.randn((), generator=generator, dtype=torch.float64).item()
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        if math.log(_uniform(generator)) < 0.5 * x * x + d - d * v + d * math.log(v):
            return math.log(d * v) + boost


def sample_beta(a: float, b: float, generator: torch.Generator) -> float:
    """X ~ Beta(a, b) as G_a / (G_a + G_b), computed in log space (safe for small a, b)."""
    log_x, log_y = sample_log_gamma(a, generator), sample_log_gamma(b, generator)
    return 1.0 / (1.0 + math.exp(min(log_y - log_x, 700.0)))


# -- the mixing mechanics -----------------------------------------------------------------------------
def mix_with_flip(x: torch.Tensor, lam: float) -> torch.Tensor:
    """lam * x + (1 - lam) * x.flip(0), in x's dtype."""
    return x * lam + x.flip(0) * (1.0 - lam)


def cutmix_box(h: int, w: int, lam: float, cy: int, cx: int) -> tuple[int, int, int, int]:
    """A box of about (1 - lam) of the area, sides ``int(side * sqrt(1 - lam))``, centred at (cy, cx),
    clipped to the image: (y1, y2, x1, x2), half-open."""
    ratio = math.sqrt(max(0.0, 1.0 - lam))
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    y1, x1 = cy - cut_h // 2, cx - cut_w // 2
    return max(y1, 0), min(y1 + cut_h, h), max(x1, 0), min(x1 + cut_w, w)


def paste_from_flip(images: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """A copy of ``images`` where the box of sample i comes from sample N-1-i."""
    y1, y2, x1, x2 = box
    out = images.clone()
    if y2 > y1 and x2 > x1:
        out[:, :, y1:y2, x1:x2] = images[:, :, y1:y2, x1:x2].flip(0)
    return out


class BatchAugmentation:
    """Shared by the batch augmentations: validation, label smoothing and the owned generator."""

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, seed: int | None = None) -> None:
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing!r}")
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        if seed is None:  # from the global torch generator: reproducible after torch.manual_seed
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.seed = int(seed)
        self.generator = torch.Generator(device="cpu").manual_seed(self.seed)
        self.last_lam: float | None = None
        self.last_mode: str | None = None
        self.last_box: tuple[int, int, int, int] | None = None
        self.last_lam_sampled: float | None = None  # CutMix: the Beta draw before the area correction

    # the parts each call goes through
    def check(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(f"images must be a float tensor [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if targets.shape != (images.shape[0], self.num_classes) or not targets.is_floating_point():
            raise ValueError(
                f"targets must be a float tensor [N, {self.num_classes}] (one-hot or soft) for {images.shape[0]} images,"
                f" got {targets.dtype} {tuple(targets.shape)}"
            )

    def smooth(self, targets: torch.Tensor) -> torch.Tensor:
        eps = self.label_smoothing
        return targets * (1.0 - eps) + eps / self.num_classes if eps > 0 else targets

    def sample_lambda(self, alpha: float) -> float:
        """lam ~ Beta(alpha, alpha); alpha <= 0 means no mixing (lam = 1)."""
        return sample_beta(alpha, alpha, self.generator) if alpha > 0 else 1.0

    def _randint(self, high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=self.generator).item())

    def _mixup(self, images: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        lam = self.sample_lambda(alpha)
        self.last_lam, self.last_mode, self.last_box = lam, "mixup", None
        return mix_with_flip(images, lam), mix_with_flip(targets, lam)

    def _cutmix(self, images: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = images.shape[-2:]
        sampled = self.sample_lambda(alpha)
        box = cutmix_box(h, w, sampled, self._randint(h), self._randint(w))
        lam = 1.0 - (box[1] - box[0]) * (box[3] - box[2]) / float(h * w)  # the exact pasted fraction
        self.last_lam, self.last_mode, self.last_box = lam, "cutmix", box
        self.last_lam_sampled = sampled
        return paste_from_flip(images, box), mix_with_flip(targets, lam)

    # exact resume
    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if not k.startswith("last_") and k != "generator"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


class Mixup(BatchAugmentation):
    """Mixup: one lam ~ Beta(alpha, alpha) per batch; x_i <- lam x_i + (1 - lam) x_(N-1-i), same for targets."""

    def __init__(self, num_classes: int, alpha: float = 0.2, label_smoothing: float = 0.0, seed: int | None = None) -> None:
        if not float(alpha) > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        super().__init__(num_classes, label_smoothing, seed)
        self.alpha = float(alpha)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check(images, targets)
        return self._mixup(images, self.smooth(targets), self.alpha)


class CutMix(BatchAugmentation):
    """CutMix: paste a box of area ~(1 - lam), lam ~ Beta(alpha, alpha), from the partner; the box is
    clipped to the image and the targets use the exact pasted fraction, lam = 1 - box_area / (H W)."""

    def __init__(self, num_classes: int, alpha: float = 1.0, label_smoothing: float = 0.0, seed: int | None = None) -> None:
        if not float(alpha) > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        super().__init__(num_classes, label_smoothing, seed)
        self.alpha = float(alpha)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check(images, targets)
        return self._cutmix(images, self.smooth(targets), self.alpha)


class MixupCutmix(BatchAugmentation):
    """With probability ``prob`` mix the batch: CutMix with probability ``switch_prob``, else Mixup.
    Unmixed batches only get the label smoothing (``last_mode == "none"``, ``last_lam == 1``)."""

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.2,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
        seed: int | None = None,
    ) -> None:
        for name, value in (("prob", prob), ("switch_prob", switch_prob)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if not float(value) > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        super().__init__(num_classes, label_smoothing, seed)
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.prob, self.switch_prob = float(prob), float(switch_prob)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check(images, targets)
        targets = self.smooth(targets)
        if _uniform(self.generator) >= self.prob:
            self.last_lam, self.last_mode, self.last_box = 1.0, "none", None
            return images, targets
        if _uniform(self.generator) < self.switch_prob:
            return self._cutmix(images, targets, self.cutmix_alpha)
        return self._mixup(images, targets, self.mixup_alpha)


def mixup(num_classes: int, alpha: float = 0.2, label_smoothing: float = 0.0, seed: int | None = None) -> Mixup:
    """Mixup (Zhang et al. 2018): one lam ~ Beta(alpha, alpha) per batch, partner = the flipped batch."""
    return Mixup(num_classes, alpha=alpha, label_smoothing=label_smoothing, seed=seed)


def cutmix(num_classes: int, alpha: float = 1.0, label_smoothing: float = 0.0, seed: int | None = None) -> CutMix:
    """CutMix (Yun et al. 2019): paste a box of area 1-lam from the flipped batch; targets by the exact pasted area."""
    return CutMix(num_classes, alpha=alpha, label_smoothing=label_smoothing, seed=seed)


def mixup_cutmix(
    num_classes: int,
    mixup_alpha: float = 0.2,
    cutmix_alpha: float = 1.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    label_smoothing: float = 0.0,
    seed: int | None = None,
) -> MixupCutmix:
    """Mixup or CutMix per batch: with probability prob, CutMix with probability switch_prob, else Mixup."""
    return MixupCutmix(num_classes, mixup_alpha, cutmix_alpha, prob, switch_prob, label_smoothing, seed)
