"""The Python API and the run outputs: finetune on a custom Dataset, load, predict, evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tomllib
import torch

import transferkit
from transferkit.cli import main
from transferkit.testing import COLOURS, write_recipe

from .conftest import needs_plugin_component


class ColourSquares:
    """A user's own map-style Dataset: (PIL image, label) pairs and a ``classes`` list."""

    classes = list(COLOURS)

    def __init__(self, n: int = 30, seed: int = 0) -> None:
        from transferkit.testing import make_image

        rng = np.random.default_rng(seed)
        self.items = [(make_image(COLOURS[self.classes[i % 3]], rng), i % 3) for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture
def finished_run(tiny_run):
    """transferkit.testing's tiny run: trained once per session (finetune RECIPE --output --set
    phases.finetune.epochs=1), copied for each test."""
    return tiny_run


def test_run_directory_holds_everything(finished_run):
    names = {p.name for p in finished_run.iterdir()}
    assert {"recipe.toml", "metrics.jsonl", "checkpoints", "model.safetensors", "manifest.json", "curves.png",
            "confusion_matrix.png", "summary.json"} <= names
    resolved = tomllib.loads((finished_run / "recipe.toml").read_text())
    assert resolved["phases"]["finetune"]["epochs"] == 1 and resolved["train"]["optimizer"] == "adamw"
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert manifest["classes"] == ["blue", "green", "red"] and manifest["backbone"]["name"] == "tiny/cnn"
    summary = json.loads((finished_run / "summary.json").read_text())
    assert set(summary["phases"]) == {"extract", "finetune"} and 0.0 <= summary["test"]["top1"] <= 1.0


def test_load_predicts_class_names(finished_run, image_folder):
    model = transferkit.load(finished_run)
    files = sorted((image_folder / "test" / "red").glob("*.png"))
    preds = model.predict([str(f) for f in files], top_k=2)
    assert all(p.label in model.classes and len(p.top_k) == 2 and 0 <= p.probability <= 1 for p in preds)
    probs = model.predict_proba([str(f) for f in files])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_inference_preprocesses_exactly_as_training_evaluated(finished_run, image_folder, tmp_path):
    """No train/serve skew: a loaded run turns a file into the very tensor that the training
    run's evaluation made of it (decoded once, shrunk antialiased, then resized and cropped)."""
    from PIL import Image

    from transferkit.data.decoding import resize_shorter
    from transferkit.data.preprocessing import preprocessing_for
    from transferkit.data.sources import read_image

    model = transferkit.load(finished_run)
    pre = model.manifest["preprocessing"]
    eval_tf = preprocessing_for(model.model.data_config, pre["image_size"], crop_pct=pre["image_size"] / pre["resize_shorter_side"])
    side = pre["resize_shorter_side"]
    originals = sorted((image_folder / "test").rglob("*.png"))[:2]
    larger = []
    for i, file in enumerate(originals):  # the same photos larger than the run's shorter side (a probe run's may exceed theirs)
        larger.append(tmp_path / f"large-{i}.png")
        Image.open(file).resize((2 * side + 3, 2 * side)).save(larger[-1])
    assert all(min(read_image(f).shape[:2]) > side for f in larger)  # the shrinking path is exercised
    for file in originals + larger:
        array = read_image(file)
        expected = eval_tf(resize_shorter(array, side))
        assert torch.equal(model.preprocessing(read_image(file)), expected)


@needs_plugin_component("tta", "averaging/10crop", "transferkit-averaging")
def test_tta_batches_views_of_several_images_and_averages_each_image_alone(finished_run, image_folder):
    model = transferkit.load(finished_run)
    files = [str(f) for f in sorted((image_folder / "test").rglob("*.png"))[:7]]
    together = model.predict_proba(files, tta="averaging/10crop", batch_size=24)  # 70 views: batches of 30, 30 and 10
    alone = np.concatenate([model.predict_proba([f], tta="averaging/10crop") for f in files])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    assert together.shape == (7, len(model.classes))


def test_evaluate_and_predict_commands(finished_run, image_folder, capsys):
    assert main(["evaluate", str(finished_run)]) == 0
    assert "on 12 images" in capsys.readouterr().out
    assert main(["evaluate", str(finished_run), "--data", str(image_folder)]) == 0
    assert main(["predict", str(finished_run), str(image_folder / "test" / "blue"), "--top-k", "3"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.endswith("")][-4:]
    assert len(lines) == 4 and all(len(line.split("\t")[1].split("  ")) == 3 for line in lines)


def test_finetune_on_a_custom_dataset(tiny_backbone, tmp_path):
    result = transferkit.finetune(
        {"name": "custom", "backbone": {"name": "tiny/cnn", "weights": "none"}, "data": {"image_size": 32, "batch_size": 8},
         "phases": {"extract": {"epochs": 3, "lr": 0.05}, "finetune": {"epochs": 1}},
         "train": {"final": "last"}},  # no choice, no cross-fitting: a run on the dataset (the default recipe's is below)
        dataset=ColourSquares(36), test_dataset=ColourSquares(15, seed=1), output=tmp_path / "run", quiet=True,
    )
    assert result.summary["classes"] == ColourSquares.classes
    assert result.test_accuracy is not None and result.test_accuracy >= 0.6  # colour is easy to learn
    assert transferkit.load(result.run_dir).predict(ColourSquares(3, seed=2).items[0][0])[0].label in ColourSquares.classes


def test_output_directory_holding_a_run_is_refused(finished_run, tiny_recipe, tmp_path, capsys):
    path = write_recipe(tmp_path / "again.toml", tiny_recipe)
    assert main(["finetune", str(path), "--output", str(finished_run)]) == 1
    assert "already holds a run; resume it with --resume" in capsys.readouterr().err


def test_a_new_model_from_kept_weights_through_the_public_run_directory_api(tiny_recipe, tmp_path):
    """What a weight-averaging plugin needs: the kept checkpoints, scoring other weights on the
    run's validation split, and writing them as a model folder that loads and evaluates alike."""
    tiny_recipe["train"]["keep_checkpoints"] = 2
    run = transferkit.RunDir(transferkit.finetune(tiny_recipe, output=tmp_path / "run", quiet=True).run_dir)
    kept = run.kept_checkpoints()
    assert len(kept) == 2 and kept[0].score >= kept[1].score and {k.phase for k in kept} <= {"extract", "finetune"}
    a, b = (k.state_dict() for k in kept)
    mean = {key: (a[key] + b[key]) / 2 if a[key].is_floating_point() else a[key] for key in a}
    scored = transferkit.evaluate(run.path, split="val", model=transferkit.load(run.path).with_weights(mean))
    assert scored["n"] == 9 and 0.0 <= scored["top1"] <= 1.0
    folder = run.write_model_folder(tmp_path / "mean", mean)
    assert transferkit.evaluate(folder.path, split="val")["top1"] == scored["top1"]
    assert transferkit.RunDir.timestamped("tiny", "sweep-").parent.as_posix() == "runs/tiny"


class CountingSquares(ColourSquares):
    """ColourSquares that counts its ``__getitem__`` calls and labels its items by class name."""

    def __init__(self, n: int = 30, seed: int = 0) -> None:
        super().__init__(n, seed)
        self.items = [(image, self.classes[label]) for image, label in self.items]
        self.calls = 0

    def __getitem__(self, i):
        self.calls += 1
        return self.items[i]


def _tiny_overrides(backbone: str) -> dict:
    return {"backbone__name": backbone, "backbone__weights": "none", "data__image_size": 32, "data__batch_size": 8,
            "phases__extract__epochs": 1, "phases__finetune__epochs": 1}


def test_finetune_on_a_dataset_works_from_any_directory_and_reads_each_item_once(tiny_backbone, tmp_path, monkeypatch):
    """No recipe given: the default recipe inside the package, not recipes/quickstart.toml of the
    working directory; class-name labels; every __getitem__ once although both phases ran."""
    monkeypatch.chdir(tmp_path)
    data = CountingSquares(36)
    result = transferkit.finetune(dataset=data, output=tmp_path / "run", quiet=True, **_tiny_overrides(tiny_backbone))
    assert result.summary["name"] == "custom" and result.summary["classes"] == ColourSquares.classes
    assert data.calls == len(data)


def test_a_run_trained_on_a_dataset_is_evaluated_and_reported_on_a_dataset(tiny_backbone, tmp_path, capsys):
    run = transferkit.finetune(dataset=ColourSquares(36), output=tmp_path / "run", quiet=True, **_tiny_overrides(tiny_backbone)).run_dir
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "the run was trained on a Python dataset, whose images are not files: evaluate it with transferkit.evaluate(" in err
    metrics = transferkit.evaluate(run, dataset=CountingSquares(12, seed=3))
    assert metrics["n"] == 12 and 0.0 <= metrics["top1"] <= 1.0
    html, _ = transferkit.report(run, dataset=ColourSquares(9, seed=4), log=lambda _: None)
    assert html.is_file()
