"""RandAugment: the op set, exactly N ops per image, the magnitude scale, seeding."""

from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np
import pytest
from scipy import stats

from transferkit_augment.randaugment import (
    COLOUR,
    GEOMETRIC,
    OPS,
    SIGNED,
    WITHOUT_MAGNITUDE,
    RandAugment,
    apply_op,
    op_argument,
)

PAPER_OPS = {
    "Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Posterize",
    "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY",
}


def smooth_image(seed: int, h: int = 40, w: int = 48) -> np.ndarray:
    """A smooth random colour image (bicubic upsampling of 6x6 noise), values spread over 0..255."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 6, 3)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(big, 0, 255).astype(np.uint8)


def textured_image(seed: int, h: int = 40, w: int = 48) -> np.ndarray:
    """smooth_image plus pixel noise (fine detail for the sharpness filter to act on)."""
    noise = np.random.default_rng(seed + 1000).integers(-20, 21, (h, w, 3))
    return np.clip(smooth_image(seed, h, w).astype(np.int16) + noise, 0, 255).astype(np.uint8)


def ramp_image(seed: int, h: int = 40, w: int = 48) -> np.ndarray:
    """Each channel a linear ramp over 0..255 in a random direction. On a linear image the pixel
    change of a warp is proportional to the displacement, so it cannot saturate the way it does
    on textured images once the shift exceeds the texture's correlation length."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    channels = []
    for theta in rng.uniform(0, 2 * np.pi, 3):
        proj = (x - (w - 1) / 2) * np.cos(theta) + (y - (h - 1) / 2) * np.sin(theta)
        channels.append(127.5 + 127.5 * proj / np.abs(proj).max())
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def run(t: A.BasicTransform, img: np.ndarray) -> np.ndarray:
    return t(image=img)["image"]


def mean_abs_change(op: str, m: float, images: list[np.ndarray], seeds: int = 6) -> float:
    t = RandAugment(n=1, m=m, ops=(op,))
    changes = []
    for img in images:
        for s in range(seeds):
            t.set_random_seed(s)
            changes.append(np.abs(run(t, img).astype(np.int16) - img).mean())
    return float(np.mean(changes))


def test_the_op_pool_is_the_papers_14() -> None:
    assert len(OPS) == 14 and set(OPS) == PAPER_OPS
    assert set(GEOMETRIC) | set(COLOUR) | set(WITHOUT_MAGNITUDE) == PAPER_OPS


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5])
def test_applies_exactly_n_ops_at_magnitude_m(n: int) -> None:
    img = smooth_image(0)
    t = RandAugment(n=n, m=9)
    for seed in range(20):
        t.set_random_seed(seed)
        run(t, img)
        assert len(t.last_ops) == n
        for op in t.last_ops:
            assert op.name in PAPER_OPS
            assert op.level == (0.0 if op.name in WITHOUT_MAGNITUDE else 9.0)
            assert abs(op.arg) == pytest.approx(op_argument(op.name, op.level))


def test_output_is_the_recorded_ops_applied_in_order() -> None:
    """last_ops is what happened: replaying it op by op reproduces the output bit for bit."""
    t = RandAugment(n=3, m=17)
    for seed in range(30):
        img = smooth_image(seed)
        t.set_random_seed(seed)
        out = run(t, img)
        replay = img
        for op in t.last_ops:
            replay = apply_op(replay, op.name, op.arg)
        np.testing.assert_array_equal(out, replay)


def test_ops_are_drawn_uniformly_and_signs_are_fair() -> None:
    t = RandAugment(n=4, m=9)
    t.set_random_seed(1)
    draws = [op for _ in range(1050) for op in t.sample_ops()]  # 4200 draws, 300 per op expected
    counts = [sum(op.name == name for op in draws) for name in OPS]
    assert stats.chisquare(counts).pvalue > 1e-3
    signed = [op for op in draws if op.name in SIGNED]
    negative = sum(op.arg < 0 for op in signed)
    assert stats.binomtest(negative, len(signed), 0.5).pvalue > 1e-3


def test_magnitude_zero_is_the_identity_for_every_op_with_a_magnitude() -> None:
    img = smooth_image(3)
    for op in GEOMETRIC + COLOUR:
        np.testing.assert_array_equal(apply_op(img, op, op_argument(op, 0.0)), img, err_msg=op)


@pytest.mark.parametrize("op", GEOMETRIC + COLOUR)
def test_larger_magnitude_changes_pixels_more(op: str) -> None:
    # warps: linear images (change ~ displacement); pixel ops: textured images (a ramp is a fixed
    # point of the sharpness filter)
    images = [ramp_image(s) if op in GEOMETRIC else textured_image(s) for s in range(3)]
    changes = [mean_abs_change(op, m, images) for m in (3, 10, 17, 24, 30)]
    assert all(a < b for a, b in zip(changes, changes[1:])), (op, changes)


def test_magnitude_free_ops_do_not_depend_on_m() -> None:
    img = smooth_image(4)
    for op in ("AutoContrast", "Equalize"):
        outs = []
        for m in (0, 15, 30):
            t = RandAugment(n=1, m=m, ops=(op,))
            outs.append(run(t, img))
        np.testing.assert_array_equal(outs[0], outs[1])
        np.testing.assert_array_equal(outs[0], outs[2])
        assert not np.array_equal(outs[0], img)  # they do something on this image
    np.testing.assert_array_equal(run(RandAugment(n=3, ops=("Identity",)), img), img)


def test_magnitude_noise_is_gaussian_around_m_and_uniform_for_inf() -> None:
    t = RandAugment(n=1, m=15, magnitude_std=2.0, ops=("Rotate",))
    t.set_random_seed(0)
    levels = [t.sample_ops()[0].level for _ in range(1500)]
    assert stats.kstest(levels, "norm", args=(15.0, 2.0)).pvalue > 1e-3
    t = RandAugment(n=1, m=12, magnitude_std=float("inf"), ops=("Rotate",))
    t.set_random_seed(0)
    levels = [t.sample_ops()[0].level for _ in range(1500)]
    assert stats.kstest(levels, "uniform", args=(0.0, 12.0)).pvalue > 1e-3
    t = RandAugment(n=1, m=29, magnitude_std=5.0, ops=("Rotate",))
    assert all(0.0 <= t.sample_ops()[0].level <= 30.0 for _ in range(200))


def test_ranges_at_full_magnitude() -> None:
    assert op_argument("Rotate", 30) == pytest.approx(30.0)
    assert op_argument("ShearX", 30) == pytest.approx(0.3)
    assert op_argument("TranslateY", 30) == pytest.approx(0.45)
    assert op_argument("Brightness", 30) == pytest.approx(0.9)
    assert op_argument("Posterize", 30) == 4 and op_argument("Posterize", 0) == 8
    assert op_argument("Solarize", 30) == 0 and op_argument("Solarize", 0) == 256
    assert op_argument("Rotate", 9) == pytest.approx(9.0)  # linear in M


def test_translate_moves_by_the_fraction_of_the_side() -> None:
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, 10] = 255
    out = apply_op(img, "TranslateX", 0.25, fill=(0, 0, 0))  # 10 px
    assert np.flatnonzero(out[5, :, 0]).tolist() == [0]


def test_reproducible_under_a_seed_and_seeds_differ() -> None:
    img = smooth_image(5)
    outs = []
    for seed in (7, 7, 8):
        c = A.Compose([RandAugment(n=2, m=9)], seed=seed)
        outs.append([run(c, img) for _ in range(5)])
    for a, b in zip(outs[0], outs[1]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(outs[0], outs[2]))


def test_own_stream_differs_from_the_seed_shared_with_other_transforms() -> None:
    """albumentations gives every child of a Compose the same seed; ours is salted."""
    t = RandAugment()
    A.Compose([A.HorizontalFlip(), t], seed=11)
    assert t.py_random.random() != random.Random(11).random()
    assert t.seed == 11


@pytest.mark.parametrize("op", OPS)
def test_shape_and_dtype_kept(op: str) -> None:
    img = smooth_image(6, 33, 50)
    out = apply_op(img, op, op_argument(op, 30))
    assert out.shape == img.shape and out.dtype == np.uint8 and out.flags.c_contiguous


def test_rejects_bad_parameters_and_inputs() -> None:
    for kwargs in ({"m": 31}, {"m": -1}, {"n": -1}, {"n": 1.5}, {"ops": ("Invert",)}, {"magnitude_std": -1}):
        with pytest.raises(ValueError):
            RandAugment(**kwargs)
    with pytest.raises(ValueError, match="uint8"):
        run(RandAugment(), smooth_image(0).astype(np.float32))
