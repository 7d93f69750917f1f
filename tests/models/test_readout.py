"""backbone.readout: the pooled features, or those and the last stages' averaged outputs."""

from __future__ import annotations

import pytest
import timm
import torch

import transferkit
from transferkit.engine.rundir.model_files import load_classifier, read_manifest
from transferkit.errors import RecipeError
from transferkit.models.backbone import create_backbone
from transferkit.models.readout import STAGES, readout_blocks
from transferkit.testing import TINY_BACKBONE, make_recipe, write_image_folder

from ..older_runs import as_before_key


def test_stages_are_the_pooled_features_then_each_of_the_last_stages_averaged():
    torch.manual_seed(0)
    pooled = create_backbone("timm/tf_efficientnet_lite0").eval()
    staged = create_backbone("timm/tf_efficientnet_lite0", readout="stages").eval()
    staged.load_state_dict(pooled.state_dict())
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain, read = pooled(images), staged(images)
        # by hand from timm's own modules: blocks 4 (112 channels) and 6 (320), each averaged
        body, outputs, x = pooled.body, [], pooled.body.bn1(pooled.body.conv_stem(images))
        for block in body.blocks:
            x = block(x)
            outputs.append(x.mean((2, 3)))
    assert (staged.readout, staged.num_features) == ("stages", 1280 + 112 + 320)
    assert read.shape == (2, staged.num_features)
    assert torch.equal(read[:, :1280], plain)  # the pooled features are unchanged, and first
    assert torch.allclose(read[:, 1280:], torch.cat([outputs[4], outputs[6]], 1), atol=1e-6)
    assert STAGES == 2
    assert readout_blocks(staged) == [1280, 112, 320]  # what the probe scales block by block
    assert readout_blocks(pooled) == [1280]


def test_auto_reads_stages_where_the_backbone_has_them_and_the_pooled_features_elsewhere(tiny_backbone):
    assert create_backbone("timm/resnet18", readout="auto").readout == "stages"
    assert create_backbone("timm/resnet18", readout="auto").num_features == 512 + 256 + 512
    for name in ("torchvision/resnet18", TINY_BACKBONE):
        backbone = create_backbone(name, readout="auto").eval()
        assert backbone.readout == "pooled"
        assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, backbone.num_features)
    assert create_backbone("timm/resnet18").readout == "pooled"  # the Python default keeps the old features


def test_stages_on_a_backbone_without_them_is_one_line_naming_it_and_the_fix():
    with pytest.raises(RecipeError) as caught:
        create_backbone("torchvision/resnet18", readout="stages")
    message = str(caught.value)
    assert "\n" not in message and "'torchvision/resnet18'" in message and 'set backbone.readout = "pooled"' in message
    with pytest.raises(RecipeError, match="backbone.readout = 'middle': not one of auto, pooled, stages"):
        create_backbone("timm/resnet18", readout="middle")


def test_a_recipe_with_another_readout_is_refused_in_one_line(tmp_path):
    with pytest.raises(transferkit.RecipeError) as caught:
        transferkit.load_recipe(make_recipe(tmp_path, backbone={"readout": "all"}), check_data=False)
    assert "backbone.readout" in str(caught.value) and "\n" not in str(caught.value).strip()


def test_a_run_records_its_readout_and_loads_with_it(tmp_path, tiny_backbone, capsys):
    root = write_image_folder(tmp_path / "images")
    recipe = make_recipe(root, "timm/mobilenetv3_small_050", backbone={"readout": "auto"}, phases={"finetune": {"epochs": 1}})
    run = transferkit.finetune(recipe, output=tmp_path / "run")
    widths = [s["num_chs"] for s in timm.create_model("mobilenetv3_small_050").feature_info]
    assert f"head on {1024 + sum(widths[-STAGES:])} features (pooled + the last 2 stages)" in capsys.readouterr().out
    manifest = read_manifest(run.run_dir)
    assert manifest["backbone"]["readout"] == "stages"
    assert manifest["num_features"] == 1024 + sum(widths[-STAGES:])
    model, _ = load_classifier(run.run_dir)
    assert model.backbone.readout == "stages" and model.head.in_features == manifest["num_features"]


def test_a_run_from_before_readout_resumes_reading_the_pooled_features(tmp_path, tiny_backbone, capsys):
    """A run started before backbone.readout (its recipe and checkpoint without the key, its head
    on the pooled features) resumes as it was, not under the new default."""
    from transferkit.cli import main

    root = write_image_folder(tmp_path / "images")
    recipe = make_recipe(root, "timm/mobilenetv3_small_050", backbone={"readout": "pooled"}, phases={"finetune": {"epochs": 1}})
    run = transferkit.finetune(recipe, output=tmp_path / "run", quiet=True).run_dir
    as_before_key(run, "backbone", "readout", 'readout = "pooled"\n')
    assert main(["finetune", "--resume", str(run)]) == 0, capsys.readouterr().err
    model, manifest = load_classifier(run)
    assert manifest["backbone"]["readout"] == "pooled" and model.head.in_features == 1024
