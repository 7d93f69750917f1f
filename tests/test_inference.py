"""``transferkit.load(run).predict``: what it takes (a folder, a batch ``[N, H, W, C]`` or
``[N, C, H, W]``, a list) and what it refuses (top_k < 1, a normalised batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import transferkit
from transferkit.data.sources import read_image
from transferkit.errors import DataError, UsageError


def test_a_folder_is_its_image_files(tiny_run, image_folder):
    model = transferkit.load(tiny_run)
    folder = image_folder / "test" / "blue"
    files = sorted(str(f) for f in folder.glob("*.png"))
    assert np.allclose(model.predict_proba(folder), model.predict_proba(files))
    assert len(model.predict(str(folder))) == len(files)


def test_nhwc_and_nchw_batches_are_batches_of_images(tiny_run, image_folder):
    model = transferkit.load(tiny_run)
    files = sorted((image_folder / "test" / "green").glob("*.png"))
    arrays = [read_image(f) for f in files]
    one_by_one = model.predict_proba(arrays)
    nhwc = np.stack(arrays)
    assert np.allclose(model.predict_proba(nhwc), one_by_one, atol=1e-6)
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2).float() / 255.0
    assert np.allclose(model.predict_proba(nchw), one_by_one, atol=1e-3)


def test_top_k_below_one_and_normalised_batches_are_refused(tiny_run, image_folder):
    model = transferkit.load(tiny_run)
    image = read_image(next((image_folder / "test" / "red").glob("*.png")))
    with pytest.raises(UsageError, match="top_k 0: give 1 or more"):
        model.predict(image, top_k=0)
    normalised = (torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 - 0.5) / 0.25
    with pytest.raises(DataError, match="look normalised"):
        model.predict_proba(normalised[None])
