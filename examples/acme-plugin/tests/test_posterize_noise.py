"""acme/posterize_noise on generated images: what it computes, its probability, its seeding and
its parameter errors."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

import transferkit
from transferkit_acme.posterize_noise import PosterizeNoise, posterize_noise


def _image(seed: int = 0, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def _apply(transform: A.BasicTransform, image: np.ndarray, seed: int = 0) -> np.ndarray:
    return A.Compose([transform], seed=seed)(image=image)["image"]


@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_without_noise_it_is_posterize(bits: int) -> None:
    image = _image()
    out = _apply(posterize_noise(bits=bits, noise=0.0, p=1.0), image)
    step = 2 ** (8 - bits)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out, image // step * step)


def test_identity_at_eight_bits_without_noise() -> None:
    image = _image()
    np.testing.assert_array_equal(_apply(posterize_noise(bits=8, noise=0.0, p=1.0), image), image)


def test_noise_has_the_requested_spread() -> None:
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    out = _apply(posterize_noise(bits=8, noise=10.0, p=1.0), flat).astype(np.float64)
    assert abs(out.mean() - 128) < 0.5
    assert 9.5 < out.std() < 10.5


def test_probability_p() -> None:
    image = _image()
    pipeline = A.Compose([posterize_noise(bits=2, noise=0.0, p=0.3)], seed=0)
    changed = [not np.array_equal(pipeline(image=image)["image"], image) for _ in range(400)]
    assert 0.22 < np.mean(changed) < 0.38
    assert all(np.array_equal(_apply(posterize_noise(p=0.0), image, s), image) for s in range(20))


def test_reproducible_under_a_seed() -> None:
    image = _image()
    a = _apply(posterize_noise(noise=6.0, p=1.0), image, seed=3)
    b = _apply(posterize_noise(noise=6.0, p=1.0), image, seed=3)
    c = _apply(posterize_noise(noise=6.0, p=1.0), image, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("params", "message"),
    [({"bits": 0}, "bits: must be an integer from 1 to 8"), ({"bits": 4.0}, "bits: must be an integer"),
     ({"noise": -1.0}, "noise: must be a number from 0 to 64"), ({"p": 1.5}, "p: must be a probability")],
)
def test_bad_parameters_are_named(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        posterize_noise(**params)
    with pytest.raises(transferkit.PluginError, match=f"'acme/posterize_noise' \\(plugin 'acme'\\) rejected its parameters: {message}"):
        transferkit.create_augmentation("acme/posterize_noise", **params)


def test_refuses_float_images() -> None:
    with pytest.raises(ValueError, match="expects a uint8 HWC RGB image"):
        PosterizeNoise(p=1.0).apply(np.zeros((8, 8, 3), dtype=np.float32))
