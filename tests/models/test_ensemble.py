"""The probe + fine-tuned ensemble as one classifier (train.final = "ensemble"): its logits are the
two networks' at their own sizes, each weighted onto one scale; a run ends with it, writes it, and everything that
reads a run (load, evaluate, export, other weights of the run) takes it; a new run started from it:
tests/engine/test_resume_extend.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import transferkit
from transferkit.engine.run import run_recipe
from transferkit.models.classifier import Classifier
from transferkit.models.ensemble import TwinBackbone, balanced_weights, ensemble_classifier, logit_spread
from transferkit.recipe import Recipe
from transferkit.recipe_loading import load_recipe
from transferkit.testing import TinyCNN


def _classifier(seed: int) -> Classifier:
    torch.manual_seed(seed)
    model = Classifier(TinyCNN(), ["a", "b", "c"])
    torch.nn.init.normal_(model.head.weight, std=1.0)
    torch.nn.init.normal_(model.head.bias, std=1.0)
    return model.eval()


def test_the_ensembles_logits_are_the_mean_of_the_probes_and_the_resized_finetuned_models():
    probe, finetuned = _classifier(0), _classifier(1)
    model = ensemble_classifier(probe, finetuned, finetuned_size=24)
    x = torch.rand(4, 3, 40, 40)
    small = F.interpolate(x, size=(24, 24), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        expected = (probe(x) + finetuned(small)) / 2
        assert torch.allclose(model(x), expected, atol=1e-5)
        # same argmax and softmax as averaging the log-probabilities (the geometric mean of the probabilities)
        geometric = (probe(x).log_softmax(1) + finetuned(small).log_softmax(1)) / 2
        assert torch.allclose(model(x).softmax(1), geometric.softmax(1), atol=1e-5)
        # at the fine-tuned size the input goes through unchanged
        assert torch.allclose(ensemble_classifier(probe, finetuned, 40)(x), (probe(x) + finetuned(x)) / 2, atol=1e-5)
    assert isinstance(model.backbone, TwinBackbone) and model.backbone.num_features == 2 * probe.backbone.num_features


def test_weights_scale_each_members_logits():
    probe, finetuned = _classifier(0), _classifier(1)
    x = torch.rand(4, 3, 24, 24)
    with torch.no_grad():
        model = ensemble_classifier(probe, finetuned, 24, weights=(0.8, 0.25))
        assert torch.allclose(model(x), 0.8 * probe(x) + 0.25 * finetuned(x), atol=1e-5)
    with pytest.raises(ValueError, match="must be >= 0"):
        ensemble_classifier(probe, finetuned, 24, weights=(-0.5, 1.0))


def test_balanced_weights_put_both_members_on_one_scale():
    rng = np.random.default_rng(0)
    finetuned = rng.normal(size=(30, 5))
    probe = 3.0 * rng.normal(size=(30, 5)) + 7.0  # three times the spread; a constant shift changes nothing
    w_p, w_f = balanced_weights(probe, finetuned)
    assert w_p * logit_spread(probe) == pytest.approx(w_f * logit_spread(finetuned))
    # the ensemble's spread stays that of the two (their geometric mean), so the plain mean is unchanged ...
    assert 2 * w_p * logit_spread(probe) == pytest.approx(np.sqrt(logit_spread(probe) * logit_spread(finetuned)))
    assert balanced_weights(finetuned * 2, finetuned * 2) == pytest.approx((0.5, 0.5))
    # ... and a member with no spread to measure (or no images) gives the plain mean, not a division by zero
    assert balanced_weights(np.zeros((4, 3)), finetuned[:4]) == (0.5, 0.5)
    assert balanced_weights(np.zeros((0, 3)), np.zeros((0, 3))) == (0.5, 0.5)


def test_the_heavier_weight_goes_where_the_logits_are_narrower():
    """Where the members disagree, the plain mean follows the wider-spread member; on one scale the
    narrower one is heard: the case of a probe beside a model fine-tuned with label smoothing."""
    probe = np.array([[4.0, 0.0], [0.0, 4.0], [2.0, 0.0]])  # confident; wrong on the last image
    finetuned = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert (probe + finetuned).argmax(1).tolist() == [0, 1, 0]
    w_p, w_f = balanced_weights(probe, finetuned)
    assert w_f > w_p and (w_p * probe + w_f * finetuned).argmax(1).tolist() == [0, 1, 1]


def test_different_classes_are_refused():
    probe, other = _classifier(0), _classifier(1)
    other.classes = ["a", "c", "b"]
    with pytest.raises(ValueError, match="different classes"):
        ensemble_classifier(probe, other, 24)


def test_ensemble_is_the_default_and_a_multilabel_run_keeps_auto():
    assert Recipe().train.final == "ensemble"
    multi = {"task": "multilabel", "data": {"source": "csv", "root": "labels.csv"}}
    assert Recipe.model_validate(multi).train.final == "auto"
    with pytest.raises(ValueError, match='train.final: not available with task = "multilabel"'):
        Recipe.model_validate({**multi, "train": {"final": "ensemble"}})


def _split_size(run, split: str) -> int:
    return sum(line.startswith(f"{split},") for line in (run / "splits.csv").read_text().splitlines())


@pytest.fixture
def ensemble_run(tiny_recipe, tmp_path):
    tiny_recipe["data"]["val_fraction"] = 0.25
    tiny_recipe["phases"]["extract"]["image_size"] = 40  # the probe reads 40 px, the fine-tuned model 32
    tiny_recipe["train"].update(final="ensemble", calibrate="always")
    logged: list[str] = []
    result = run_recipe(load_recipe(tiny_recipe), output=tmp_path / "run", log=logged.append)
    result.logged = "\n".join(logged)
    return result


def test_a_run_ends_with_the_ensemble_and_writes_it(ensemble_run):
    result, run = ensemble_run, ensemble_run.run_dir
    final = result.summary["final"]
    assert (final["policy"], final["chosen"]) == ("ensemble", "ensemble")
    assert final["sizes"] == {"probe": 40, "finetuned": 32}
    assert list(final["candidates"]) == ["probe", "finetuned", "ensemble"]
    manifest = json.loads((run / "manifest.json").read_text())
    ensemble = manifest["backbone"]["ensemble"]
    assert ensemble["finetuned_size"] == 32 and ensemble["preprocessing"]["image_size"] == 32
    assert manifest["preprocessing"]["image_size"] == 40 and manifest["num_features"] == ensemble_run.model.head.in_features
    assert "calibration" in manifest
    # its weights: the probe as phase 1 left it, the fine-tuned model as the last epoch left it
    written = load_file(str(run / "model.safetensors"))
    probe = load_file(str(run / "checkpoints" / "phase1.safetensors"))
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key, value in probe.items():
        if key.startswith("backbone."):
            assert torch.equal(written[key.replace("backbone.", "backbone.probe.", 1)], value)
            assert torch.equal(written[key.replace("backbone.", "backbone.finetuned.", 1)], last[key])
    # the head: each member's weighted onto one scale, measured on the validation images' logits
    weights, on = final["weights"], final["weighted_on"]
    assert on["split"] == "validation" and on["images"] == _split_size(run, "val") > 0
    spread = on["spread"]
    assert weights["probe"] * spread["probe"] == pytest.approx(weights["finetuned"] * spread["finetuned"], rel=1e-4)
    expected = torch.cat([weights["probe"] * probe["head.weight"], weights["finetuned"] * last["head.weight"]], 1)
    assert torch.allclose(written["head.weight"], expected, atol=1e-5)
    shown = f"weighted {weights['probe']:.2f}/{weights['finetuned']:.2f}"
    assert f"test accuracy {result.summary['test']['top1']:.4f} (the probe + fine-tuned ensemble, {shown}, exported)" in result.logged
    # test figures: the fine-tuned model's kept beside the ensemble's
    assert result.summary["test_finetuned"]["top1"] == result.summary["phases"]["finetune"]["test_top1"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final_test = [r for r in records if r["kind"] == "test" and r.get("phase") == "final"]
    assert [(r["weights"], r["top1"]) for r in final_test] == [("ensemble", result.summary["test"]["top1"])]


def test_load_and_evaluate_give_the_runs_test_figure(ensemble_run):
    result = ensemble_run
    loaded = transferkit.load(result.run_dir)
    assert isinstance(loaded.model.backbone, TwinBackbone)
    figures = transferkit.evaluate(result.run_dir, split="test")
    assert figures["top1"] == pytest.approx(result.summary["test"]["top1"])


def test_export_verifies_the_ensemble_against_pytorch(ensemble_run, tmp_path):
    from transferkit.workbench.export.verified_file import export_run

    exported = export_run(ensemble_run.run_dir, "torchscript", output=tmp_path / "m.pt")
    assert exported.max_abs_diff <= 1e-4 and exported.real_images > 0


def test_one_network_of_an_ensemble_run_loads_as_that_network_at_its_own_preprocessing(ensemble_run, tmp_path):
    """A kept checkpoint or an average of them is one network: ``with_weights`` and a model folder
    take it as such (no ensemble, the fine-tuned network's 32 px), not as the run's two."""
    from transferkit.engine.rundir.run_dir import RunDir

    last = torch.load(ensemble_run.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    single = transferkit.load(ensemble_run.run_dir).with_weights(last)
    assert not isinstance(single.model.backbone, TwinBackbone) and single.size == 32 and single.temperature == 1.0
    figures = transferkit.evaluate(ensemble_run.run_dir, split="test", model=single)
    assert figures["top1"] == pytest.approx(ensemble_run.summary["test_finetuned"]["top1"])
    folder = RunDir(ensemble_run.run_dir).write_model_folder(tmp_path / "one", last).path
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "ensemble" not in manifest["backbone"] and manifest["preprocessing"]["image_size"] == 32
    assert transferkit.evaluate(folder, split="test")["top1"] == pytest.approx(figures["top1"])


def test_without_a_validation_split_the_weights_are_measured_on_training_images(tiny_recipe, tmp_path):
    tiny_recipe["data"]["val_fraction"] = 0.0
    tiny_recipe["train"].update(final="ensemble")
    result = run_recipe(load_recipe(tiny_recipe), output=tmp_path / "run", log=lambda m: None)
    final = result.summary["final"]
    assert final["weighted_on"]["split"] == "training" and final["weighted_on"]["images"] == _split_size(result.run_dir, "train")
    assert "candidates" not in final and sum(final["weights"].values()) > 0
