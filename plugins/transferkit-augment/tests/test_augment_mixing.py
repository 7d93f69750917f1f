"""Mixup, CutMix and the switch between them: the lambda distribution, exact target weights,
label smoothing, odd batches, dtypes and seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from transferkit_augment.mixing import (
    CutMix,
    Mixup,
    MixupCutmix,
    cutmix,
    cutmix_box,
    mixup,
    mixup_cutmix,
    sample_beta,
)

C = 10


def batch(n: int, h: int = 12, w: int = 20, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Images where every sample differs from every other at every pixel (sample i lies in
    [10 i, 10 i + 1)), and one-hot targets with a different class for each sample."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, h, w, generator=g, dtype=torch.float64) + 10 * torch.arange(n, dtype=torch.float64).view(n, 1, 1, 1)
    targets = torch.nn.functional.one_hot(torch.arange(n) % C, C).to(torch.float64)
    return images.to(dtype), targets.to(dtype)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_beta_sampler_passes_ks(alpha: float) -> None:
    g = torch.Generator().manual_seed(0)
    draws = [sample_beta(alpha, alpha, g) for _ in range(2000)]
    assert stats.kstest(draws, "beta", args=(alpha, alpha)).pvalue > 1e-3


def test_beta_sampler_asymmetric_and_tiny_alpha() -> None:
    g = torch.Generator().manual_seed(1)
    draws = [sample_beta(0.5, 3.0, g) for _ in range(2000)]
    assert stats.kstest(draws, "beta", args=(0.5, 3.0)).pvalue > 1e-3
    tiny = [sample_beta(0.01, 0.01, g) for _ in range(200)]
    assert all(0.0 <= x <= 1.0 and math.isfinite(x) for x in tiny)


@pytest.mark.parametrize("alpha", [0.2, 0.8])
def test_mixup_lambdas_are_beta_alpha_alpha(alpha: float) -> None:
    aug = Mixup(C, alpha=alpha, seed=3)
    images, targets = batch(3, 4, 4)
    lams = []
    for _ in range(1500):
        aug(images, targets)
        lams.append(aug.last_lam)
    assert stats.kstest(lams, "beta", args=(alpha, alpha)).pvalue > 1e-3


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_mixup_is_the_convex_combination_with_the_flipped_batch(n: int) -> None:
    images, targets = batch(n)
    before = images.clone()
    aug = mixup(C, alpha=1.0, seed=n)
    out, t = aug(images, targets)
    lam = aug.last_lam
    torch.testing.assert_close(out, lam * images + (1 - lam) * images.flip(0))
    torch.testing.assert_close(t, lam * targets + (1 - lam) * targets.flip(0))
    torch.testing.assert_close(t.sum(1), torch.ones(n))
    torch.testing.assert_close(images, before, rtol=0, atol=0)  # inputs untouched
    if n % 2:  # the middle sample is its own partner
        torch.testing.assert_close(out[n // 2], images[n // 2])
        torch.testing.assert_close(t[n // 2], targets[n // 2])


@pytest.mark.parametrize("n,h,w", [(6, 12, 20), (5, 16, 16), (7, 9, 31)])
def test_cutmix_targets_equal_the_pasted_pixel_fraction(n: int, h: int, w: int) -> None:
    images, targets = batch(n, h, w, dtype=torch.float64)
    aug = cutmix(C, alpha=1.0, seed=h * w)
    for _ in range(40):
        out, t = aug(images, targets)
        for i in range(n):
            j = n - 1 - i
            own = (out[i] == images[i]).all(0).double().mean().item()
            partner = (out[i] == images[j]).all(0).double().mean().item()
            if i == j:  # the middle of an odd batch pastes from itself
                assert own == 1.0 and torch.equal(t[i], targets[i])
                continue
            assert own + partner == 1.0  # every pixel comes from one of the two sources
            assert t[i, i % C].item() == pytest.approx(own, abs=1e-12)
            assert t[i, j % C].item() == pytest.approx(partner, abs=1e-12)
            assert own == pytest.approx(aug.last_lam, abs=1e-12)
        y1, y2, x1, x2 = aug.last_box
        assert 1 - aug.last_lam == pytest.approx((y2 - y1) * (x2 - x1) / (h * w), abs=1e-12)
        torch.testing.assert_close(t.sum(1), torch.ones(n, dtype=torch.float64))


def test_cutmix_samples_beta_then_corrects_by_clipping() -> None:
    aug = CutMix(C, alpha=1.0, seed=0)
    images, targets = batch(2, 32, 32)
    sampled, corrected = [], []
    for _ in range(1500):
        aug(images, targets)
        sampled.append(aug.last_lam_sampled)
        corrected.append(aug.last_lam)
    assert stats.kstest(sampled, "beta", args=(1.0, 1.0)).pvalue > 1e-3
    # clipping only shrinks the box, and int() truncation can only shrink it too: lam goes up
    assert all(c >= s - 1e-12 for s, c in zip(sampled, corrected))
    assert np.mean(corrected) > np.mean(sampled)


def test_cutmix_box_area_is_one_minus_lambda_without_clipping() -> None:
    y1, y2, x1, x2 = cutmix_box(100, 100, 0.75, 50, 50)
    assert (y2 - y1, x2 - x1) == (50, 50)
    assert cutmix_box(100, 100, 1.0, 10, 10)[1] - cutmix_box(100, 100, 1.0, 10, 10)[0] == 0
    assert cutmix_box(10, 10, 0.0, 0, 0) == (0, 5, 0, 5)  # clipped at the corner


@pytest.mark.parametrize("factory", [mixup, cutmix, mixup_cutmix])
def test_label_smoothing_comes_before_mixing(factory) -> None:
    eps = 0.1
    images, targets = batch(4)
    aug = factory(C, label_smoothing=eps, seed=2)
    _, t = aug(images, targets)
    smoothed = targets * (1 - eps) + eps / C
    lam = aug.last_lam
    torch.testing.assert_close(t, lam * smoothed + (1 - lam) * smoothed.flip(0))
    assert t.min().item() >= eps / C - 1e-7
    torch.testing.assert_close(t.sum(1), torch.ones(4))


@pytest.mark.parametrize("factory", [mixup, cutmix, mixup_cutmix])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("n", [1, 3, 4])
def test_shapes_and_dtypes_kept(factory, dtype: torch.dtype, n: int) -> None:
    images, targets = batch(n, 8, 6, dtype=dtype)
    out, t = factory(C, seed=0)(images, targets)
    assert out.shape == images.shape and out.dtype == dtype
    assert t.shape == targets.shape and t.dtype == dtype


@pytest.mark.parametrize("cls", [Mixup, CutMix, MixupCutmix])
def test_reproducible_under_a_seed_and_resumable(cls) -> None:
    images, targets = batch(5)
    a, b, other = cls(C, seed=7), cls(C, seed=7), cls(C, seed=8)
    runs_a = [a(images, targets) for _ in range(6)]
    runs_b = [b(images, targets) for _ in range(6)]
    for (xa, ta), (xb, tb) in zip(runs_a, runs_b):
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
    assert any(not torch.equal(x, other(images, targets)[0]) for x, _ in runs_a)
    state = a.state_dict()
    after = [a(images, targets)[1] for _ in range(3)]
    resumed = cls(C, seed=123)
    resumed.load_state_dict(state)
    assert all(torch.equal(x, resumed(images, targets)[1]) for x in after)


def test_default_seed_follows_torch_manual_seed() -> None:
    images, targets = batch(4)
    torch.manual_seed(42)
    first = Mixup(C)(images, targets)[0]
    torch.manual_seed(42)
    assert torch.equal(first, Mixup(C)(images, targets)[0])


def test_switch_and_prob() -> None:
    images, targets = batch(4)
    aug = MixupCutmix(C, prob=1.0, switch_prob=0.3, seed=0)
    modes = []
    for _ in range(600):
        aug(images, targets)
        modes.append(aug.last_mode)
    assert set(modes) == {"mixup", "cutmix"}
    assert stats.binomtest(modes.count("cutmix"), 600, 0.3).pvalue > 1e-3
    aug = MixupCutmix(C, prob=0.25, seed=1)
    applied = 0
    for _ in range(600):
        out, _ = aug(images, targets)
        applied += aug.last_mode != "none"
        if aug.last_mode == "none":
            assert out is images and aug.last_lam == 1.0
    assert stats.binomtest(applied, 600, 0.25).pvalue > 1e-3


def test_rejects_bad_inputs_and_parameters() -> None:
    images, targets = batch(4)
    aug = Mixup(C, seed=0)
    with pytest.raises(ValueError, match="targets"):
        aug(images, targets[:, :5])
    with pytest.raises(ValueError, match="targets"):
        aug(images, targets.argmax(1))
    with pytest.raises(ValueError, match="images"):
        aug(images[0], targets)
    for kwargs in ({"alpha": 0}, {"label_smoothing": 1.0}, {"label_smoothing": -0.1}):
        with pytest.raises(ValueError):
            Mixup(C, **kwargs)
    with pytest.raises(ValueError):
        MixupCutmix(C, switch_prob=1.5)
    with pytest.raises(ValueError):
        CutMix(0)
