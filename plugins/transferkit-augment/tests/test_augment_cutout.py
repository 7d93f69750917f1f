"""Cutout: exactly one clipped square, the expected area, zero after normalisation, seeding."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from transferkit import IMAGENET_MEAN, IMAGENET_STD
from transferkit_augment.base import IMAGENET_MEAN_PIXEL
from transferkit_augment.cutout import Cutout, cutout

FILL = np.array(IMAGENET_MEAN_PIXEL, dtype=np.uint8)


def dark_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Values in 0..99, so no pixel equals the fill (124, 116, 104) before the cutout."""
    return np.random.default_rng(seed).integers(0, 100, (h, w, 3), dtype=np.uint8)


def expected_axis_length(n: int, side: int) -> float:
    """E[clipped extent] along an axis of n pixels for a centre uniform over the n pixels."""
    lengths = [min(c - side // 2 + side, n) - max(c - side // 2, 0) for c in range(n)]
    return float(np.mean(lengths))


def filled_mask(img: np.ndarray) -> np.ndarray:
    return np.all(img == FILL, axis=-1)


@pytest.mark.parametrize("h,w,size", [(32, 32, 0.5), (40, 64, 0.25), (21, 17, 0.6)])
def test_masks_exactly_one_clipped_square(h: int, w: int, size: float) -> None:
    img = dark_image(h, w)
    t = Cutout(size=size)
    side = t.side(h, w)
    assert side == round(size * min(h, w))
    for seed in range(60):
        t.set_random_seed(seed)
        mask = filled_mask(t(image=img)["image"])
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        y1, y2, x1, x2 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        assert mask.sum() == (y2 - y1) * (x2 - x1)  # one solid rectangle
        assert (y1, y2, x1, x2) == t.last_box
        for lo, hi, n in ((y1, y2, h), (x1, x2, w)):  # a full side unless clipped at a border
            assert hi - lo == side or (hi - lo < side and (lo == 0 or hi == n))


def test_the_papers_cifar_setting_is_16px_on_32px() -> None:
    assert Cutout().side(32, 32) == 16


def test_zero_after_normalisation_on_exactly_the_square() -> None:
    norm = A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD, max_pixel_value=255.0)
    img = dark_image(48, 48, seed=1)
    t = Cutout(size=0.5)
    for seed in range(20):
        t.set_random_seed(seed)
        out = norm(image=t(image=img)["image"])["image"]
        zero = np.all(np.abs(out) < 0.01, axis=-1)
        y1, y2, x1, x2 = t.last_box
        assert zero.sum() == (y2 - y1) * (x2 - x1)
        assert zero[y1:y2, x1:x2].all()


def test_mean_area_matches_a_uniform_centre_with_clipping() -> None:
    """The centre is uniform over all pixels (so squares near a border are clipped), as in the paper."""
    h, w = 32, 24
    t = Cutout(size=0.5)
    side = t.side(h, w)
    t.set_random_seed(0)
    img = dark_image(h, w)
    areas = []
    for _ in range(3000):
        t(image=img)
        y1, y2, x1, x2 = t.last_box
        areas.append((y2 - y1) * (x2 - x1))
    expected = expected_axis_length(h, side) * expected_axis_length(w, side)
    stderr = np.std(areas) / np.sqrt(len(areas))
    assert abs(np.mean(areas) - expected) < 4 * stderr
    assert expected < side * side  # clipping matters


def test_reproducible_under_a_seed() -> None:
    img = dark_image(30, 30)
    boxes = []
    for seed in (3, 3, 4):
        t = Cutout()
        A.Compose([t], seed=seed)
        boxes.append([(t(image=img), t.last_box)[1] for _ in range(8)])
    assert boxes[0] == boxes[1] and boxes[0] != boxes[2]


def test_probability_fill_shape_and_dtype() -> None:
    img = dark_image(20, 36)
    skipped = Cutout(p=0.0)
    np.testing.assert_array_equal(skipped(image=img)["image"], img)
    assert skipped.last_box is None
    t = cutout(size=0.3, fill=(0, 255, 7))
    out = t(image=img)["image"]
    assert out.shape == img.shape and out.dtype == np.uint8
    y1, y2, x1, x2 = t.last_box
    assert np.all(out == np.array([0, 255, 7], np.uint8), axis=-1).sum() == (y2 - y1) * (x2 - x1) <= 6 * 6
    assert img.max() < 100  # the input was not modified in place
    for bad in ({"size": 0}, {"size": 1.5}, {"fill": (1, 2)}, {"fill": (0, 0, 300)}):
        with pytest.raises(ValueError):
            Cutout(**bad)
