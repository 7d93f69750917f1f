"""Colour jitter and PCA lighting: the distributions of their parameters and their effect."""

from __future__ import annotations

import itertools

import albumentations as A
import numpy as np
import pytest
from scipy import stats

from transferkit_augment.color import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    ColorJitter,
    PCALighting,
    lighting_shift,
    pca_lighting,
)


def mid_image(h: int = 16, w: int = 20, seed: int = 0) -> np.ndarray:
    """Values in 80..170: no clipping for the shifts below."""
    return np.random.default_rng(seed).integers(80, 171, (h, w, 3), dtype=np.uint8)


def test_imagenet_eigenvectors_are_orthonormal() -> None:
    np.testing.assert_allclose(IMAGENET_EIGVEC.T @ IMAGENET_EIGVEC, np.eye(3), atol=2e-3)
    assert list(IMAGENET_EIGVAL) == sorted(IMAGENET_EIGVAL, reverse=True)


def test_pca_lighting_adds_the_same_eigen_shift_to_every_pixel() -> None:
    img = mid_image()
    t = PCALighting(alphastd=0.1)
    for seed in range(20):
        t.set_random_seed(seed)
        out = t(image=img)["image"].astype(np.int16)
        expected = lighting_shift(t.last_alpha)
        np.testing.assert_allclose(t.last_shift, 255 * IMAGENET_EIGVEC @ (t.last_alpha * IMAGENET_EIGVAL))
        diff = out - img
        assert np.all(np.abs(diff - expected) <= 0.5 + 1e-9)  # rounding only
        assert np.all(diff == diff[0, 0])  # one shift for the whole image


def test_pca_lighting_along_one_component_moves_along_its_eigenvector() -> None:
    shift = lighting_shift(np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(shift, 255 * IMAGENET_EIGVAL[1] * IMAGENET_EIGVEC[:, 1])


def test_pca_lighting_alphas_are_normal_with_alphastd() -> None:
    t = pca_lighting(alphastd=0.1)
    t.set_random_seed(0)
    alphas = np.array([t.get_params()["alpha"] for _ in range(700)])
    for k in range(3):
        assert stats.kstest(alphas[:, k], "norm", args=(0.0, 0.1)).pvalue > 1e-3
    assert abs(np.corrcoef(alphas.T)[0, 1]) < 0.15  # independent components


def test_pca_lighting_clips_to_uint8() -> None:
    img = np.full((4, 4, 3), 255, np.uint8)
    t = PCALighting(alphastd=5.0)
    for seed in range(10):
        t.set_random_seed(seed)
        out = t(image=img)["image"]
        assert out.dtype == np.uint8 and out.shape == img.shape


def test_brightness_jitter_scales_by_the_recorded_factor() -> None:
    img = mid_image()
    t = ColorJitter(brightness=0.4, contrast=0, saturation=0, hue=0)
    factors = []
    for seed in range(300):
        t.set_random_seed(seed)
        out = t(image=img)["image"]
        (name, f), = t.last_factors.items()
        assert name == "brightness"
        factors.append(f)
        expected = np.clip(img.astype(np.float64) * f, 0, 255)
        assert np.abs(out - expected).max() <= 1.0
    assert stats.kstest(factors, "uniform", args=(0.6, 0.8)).pvalue > 1e-3


def test_jitter_order_is_random_and_ranges_hold() -> None:
    t = ColorJitter(brightness=0.3, contrast=0.2, saturation=0.5, hue=0.1)
    t.set_random_seed(0)
    orders = set()
    for _ in range(400):
        factors = t.get_params()["factors"]
        orders.add(tuple(factors))
        assert 0.7 <= factors["brightness"] <= 1.3 and 0.8 <= factors["contrast"] <= 1.2
        assert 0.5 <= factors["saturation"] <= 1.5 and -0.1 <= factors["hue"] <= 0.1
    assert orders == set(itertools.permutations(["brightness", "contrast", "saturation", "hue"]))


def test_hue_shift_moves_colours_but_keeps_greys() -> None:
    img = mid_image()
    hue = ColorJitter(brightness=0, contrast=0, saturation=0, hue=0.5)
    for seed in range(5):
        hue.set_random_seed(seed)
        out = hue(image=np.repeat(img[..., :1], 3, axis=-1))["image"]
        assert np.abs(out.astype(int) - img[..., :1]).max() <= 1
        hue.set_random_seed(seed)
        assert np.abs(hue(image=img)["image"].astype(int) - img).mean() > 1


def test_reproducible_and_shape_dtype() -> None:
    img = mid_image(23, 31)
    outs = [A.Compose([ColorJitter(hue=0.05), PCALighting()], seed=s)(image=img)["image"] for s in (5, 5, 6)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    assert outs[0].shape == img.shape and outs[0].dtype == np.uint8


def test_rejects_bad_parameters() -> None:
    for kwargs in ({"brightness": -0.1}, {"hue": 0.6}, {"hue": -0.1}):
        with pytest.raises(ValueError):
            ColorJitter(**kwargs)
    with pytest.raises(ValueError):
        PCALighting(alphastd=-1)
