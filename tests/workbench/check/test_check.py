"""transferkit check: initial loss against ln(C), overfitting a few batches (and why it fails),
labels that carry over to held-out training images (shuffled ones do not), exit codes."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.cli import main
from transferkit.testing import COLOURS, TinyCNN, make_image, registered_backbone, write_image_folder, write_recipe


def _result_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("PASS", "FAIL", "SKIP"))]


def shuffle_class_folders(root: Path, seed: int = 0) -> None:
    """Move every training file into a class folder drawn at random: labels unrelated to images."""
    rng = np.random.default_rng(seed)
    classes = sorted(p.name for p in (root / "train").iterdir())
    files = sorted((root / "train").glob("*/*.png"))
    for path in files:
        target = root / "train" / classes[rng.integers(len(classes))] / path.name
        if target != path:
            shutil.move(path, target)


class PermutedLabels:
    """A map-style dataset of coloured images whose labels are a random permutation of the true ones."""

    classes = sorted(COLOURS)

    def __init__(self, per_class: int, permute: bool, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = [(make_image(COLOURS[c], rng), k) for k, c in enumerate(self.classes) for _ in range(per_class)]
        if permute:
            labels = rng.permutation([label for _, label in self.items])
            self.items = [(image, int(label)) for (image, _), label in zip(self.items, labels)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def test_a_good_recipe_passes_all_three_checks_and_writes_nothing(tiny_recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    lines = _result_lines(out)
    assert [line.split(":")[0] for line in lines] == ["PASS initial loss", "PASS overfit", "PASS labels"]
    assert "vs ln(3) = 1.0986" in lines[0]
    assert "train accuracy 1.000 on 13 images (2 batches)" in lines[1] and "head on cached features" in lines[1]
    assert "14 other training images" in lines[2]
    assert out.rstrip().endswith("check: all 3 checks passed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "r.toml"]  # no run directory


def test_the_figures_behind_each_check(tiny_recipe):
    report = transferkit.check(tiny_recipe, log=None)
    assert report.passed
    initial = report["initial loss"].figures
    assert abs(initial["loss"] - math.log(3)) < 0.05 and initial["logit_std"] < 0.2
    overfit = report["overfit"].figures
    assert overfit["accuracy"] == 1.0 and overfit["final_loss"] < overfit["initial_loss"] and overfit["steps"] < 300
    labels = report["labels"].figures
    assert labels["accuracy"] > 0.9 and labels["p_value"] <= 0.01 and 0.2 < labels["chance"] < 0.5


def test_shuffled_class_folders_fail_with_the_shuffled_labels_message_and_exit_1(tiny_recipe, tmp_path, capsys):
    root = write_image_folder(tmp_path / "shuffled", {"train": 30, "test": 2})
    shuffle_class_folders(root)
    tiny_recipe["data"]["root"] = str(root)
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    lines = _result_lines(out)
    assert lines[0].startswith("PASS initial loss")  # an untrained head cannot tell
    assert lines[2].startswith("FAIL labels: held-out accuracy")
    assert "the labels look shuffled or unrelated to the images" in lines[2]
    assert "check: 1 of 3 checks failed (labels)" in out or "check: 2 of 3 checks failed" in out


def test_the_same_images_with_true_labels_pass(tiny_recipe, tmp_path):
    tiny_recipe["data"]["root"] = str(write_image_folder(tmp_path / "true", {"train": 30, "test": 2}))
    assert transferkit.check(tiny_recipe, log=None).passed


def test_python_api_dataset_with_permuted_labels_fails_labels_only(tiny_recipe):
    shuffled = transferkit.check(tiny_recipe, dataset=PermutedLabels(20, permute=True), log=None)
    assert not shuffled.passed
    labels = shuffled["labels"]
    assert labels.status == "FAIL" and labels.figures["p_value"] > 0.01
    assert "labels look shuffled" in labels.message
    assert shuffled["initial loss"].passed
    truthful = transferkit.check(tiny_recipe, dataset=PermutedLabels(20, permute=False), log=None)
    assert truthful.passed, truthful.format()


def test_an_absurd_learning_rate_is_too_high(tiny_recipe, tmp_path, capsys):
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["check", str(path), "--set", "phases.extract.lr=10"]) == 1
    overfit = _result_lines(capsys.readouterr().out)[1]
    assert overfit.startswith("FAIL overfit") and "the learning rate is too high; lower phases.extract.lr" in overfit


def test_a_tiny_learning_rate_is_too_low(tiny_recipe):
    report = transferkit.check(tiny_recipe, phases__extract__lr=1e-7, log=None)
    overfit = report["overfit"]
    assert overfit.status == "FAIL" and "the learning rate is too low; raise phases.extract.lr" in overfit.message
    assert overfit.figures["steps"] == 300
    assert report["labels"].passed  # the probe has no learning rate: the labels are still fine


def test_full_model_overfits_as_phase_2_trains(tiny_recipe):
    report = transferkit.check(tiny_recipe, full_model=True, steps=40, log=None)
    overfit = report["overfit"]
    assert overfit.passed, overfit.line()
    assert "whole model, unfreeze all" in overfit.message and overfit.figures["mode"] == "full"
    assert overfit.figures["lr"] == pytest.approx(0.005)  # extract lr 0.05 x lr_ratio 0.1


def test_a_full_model_at_an_absurd_lr_diverges(tiny_recipe):
    overfit = transferkit.check(tiny_recipe, full_model=True, steps=20, phases__extract__lr=10, phases__finetune__lr_ratio=10,
                                log=None)["overfit"]
    assert overfit.status == "FAIL" and "too high; lower phases.finetune.lr_ratio" in overfit.message


class Loud(TinyCNN):
    """Features 1000x larger than TinyCNN's: the untrained head's logits are far from uniform."""

    def forward(self, x):
        return super().forward(x) * 1000.0


@pytest.fixture
def loud_plugin():
    with registered_backbone("tiny/loud", lambda pretrained=False: Loud(), "loud-plugin"):
        yield


def test_huge_features_fail_the_initial_loss_check(tiny_recipe, loud_plugin):
    tiny_recipe["backbone"]["name"] = "tiny/loud"
    result = transferkit.check(tiny_recipe, steps=5, log=None)["initial loss"]
    assert result.status == "FAIL"
    assert result.figures["loss"] > 1.5 * math.log(3)
    assert "spread too widely" in result.message and "vs ln(3) = 1.0986" in result.message


def test_errors_are_one_line_with_exit_code_2(tiny_recipe, tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: no such recipe file" in capsys.readouterr().err
    path = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["check", str(path), "--batches", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("transferkit: error: --batches 0: must be at least 1") and err.count("\n") == 1
    assert main(["check", str(path), "--set", "phases.extract.lr=-1"]) == 2
    assert "phases.extract.lr" in capsys.readouterr().err
