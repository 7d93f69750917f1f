"""transferkit export: ONNX and TorchScript files that match the run's PyTorch classifier within
1e-4 (at other batch sizes too when the batch is dynamic), a manifest beside them that records
the preprocessing, and one-line errors that leave nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit
from transferkit.cli import main
from transferkit.engine.rundir.model_files import load_classifier, write_model_files
from transferkit.errors import TransferkitError
from transferkit.models.backbone import create_backbone
from transferkit.models.classifier import Classifier
from transferkit.testing import registered_backbone, tiny_cnn, write_image_folder
from transferkit.workbench.export import backends
from transferkit.workbench.export.verified_file import TOLERANCE, export_run

from ...conftest import needs_plugin_component

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory):
    """One finished tiny run (tiny/cnn, 32 px, 3 classes) shared by the module's tests."""
    root = tmp_path_factory.mktemp("export")
    images = write_image_folder(root / "images", {"train": 8, "test": 2})
    recipe = {
        "name": "tiny-export",
        "data": {"source": "imagefolder", "root": str(images), "image_size": 32, "batch_size": 8, "val_fraction": 0.25},
        "backbone": {"name": "tiny/cnn", "weights": "none", "head_dropout": 0.2},
        # the probe at 32 px too (its default is 8/7 of the backbone's size): every candidate exports at 32 px
        "phases": {"extract": {"epochs": 1, "lr": 0.05, "image_size": 32}, "finetune": {"epochs": 1}},
        "train": {"folds": 1, "calibrate": "always"},  # the export records the run's temperature
    }
    with registered_backbone("tiny/cnn", tiny_cnn, "tiny-export-test"):
        yield transferkit.finetune(recipe, output=root / "run", quiet=True).run_dir


def _pytorch_logits(run: Path, batch: torch.Tensor) -> np.ndarray:
    model, _ = load_classifier(run)
    with torch.no_grad():
        return model(batch).numpy()


def _batch(n: int, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_onnx_with_a_dynamic_batch_matches_pytorch_at_other_batch_sizes(run_dir, tmp_path):
    result = export_run(run_dir, "onnx", output=tmp_path / "m.onnx")
    assert result.path == tmp_path / "m.onnx" and result.manifest_path == tmp_path / "m.onnx.json"
    assert result.max_abs_diff <= TOLERANCE and result.checked_batches == [2, 5] and result.real_images > 0

    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name, inp.type) == ("images", "logits", "tensor(float)")
    assert inp.shape[1:] == [3, 32, 32] and isinstance(inp.shape[0], str)
    for n in (1, 3, 7):
        batch = _batch(n, seed=n)
        got = session.run(["logits"], {"images": batch.numpy()})[0]
        assert got.shape == (n, 3)
        assert np.abs(got - _pytorch_logits(run_dir, batch)).max() < 1e-4


def test_the_manifest_beside_the_export_records_input_output_preprocessing_and_classes(run_dir, tmp_path):
    result = export_run(run_dir, "onnx", output=tmp_path / "m.onnx")
    written = json.loads(result.manifest_path.read_text())
    run_manifest = json.loads((run_dir / "manifest.json").read_text())
    assert written["format"] == "onnx" and written["file"] == "m.onnx" and written["opset"] >= 18
    assert written["input"] == {
        "name": "images", "shape": ["batch", 3, 32, 32], "dtype": "float32", "layout": "NCHW",
        "values": "RGB, pixel / 255, then (x - mean) / std per channel, after the preprocessing below",
    }
    assert written["output"]["shape"] == ["batch", 3] and "logits" in written["output"]["meaning"]
    assert {k: v for k, v in written["preprocessing"].items() if k != "interpolation"} == run_manifest["preprocessing"]
    assert written["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and written["preprocessing"]["center_crop"] == 32
    assert written["classes"] == ["blue", "green", "red"]
    check = written["verification"]
    assert check["tolerance"] == TOLERANCE and 0 <= check["max_abs_diff"] <= TOLERANCE and check["top1_agreement"] == 1.0
    import hashlib

    assert written["sha256"] == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert transferkit.load(run_dir).classes == written["classes"]  # the run's own manifest still loads
    assert written["calibration"]["temperature"] == run_manifest["calibration"]["temperature"] == transferkit.load(run_dir).temperature
    assert "logits / calibration.temperature" in written["output"]["meaning"]
    assert written["rejection"]["threshold"] == run_manifest["rejection"]["threshold"]


def test_onnx_with_a_fixed_batch_size(run_dir, tmp_path):
    result = export_run(run_dir, "onnx", output=tmp_path / "fixed.onnx", batch_size=4)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [4, 3, 32, 32]
    assert result.manifest["input"]["shape"] == [4, 3, 32, 32] and result.checked_batches == [4]
    batch = _batch(4)
    assert np.abs(session.run(None, {"images": batch.numpy()})[0] - _pytorch_logits(run_dir, batch)).max() < 1e-4


@pytest.mark.filterwarnings("ignore:.*torch.jit")
def test_torchscript_matches_pytorch_and_defaults_into_the_run_directory(run_dir, capsys):
    assert main(["export", str(run_dir), "--format", "torchscript"]) == 0
    out = capsys.readouterr().out
    assert "max abs difference" in out and "tolerance 0.0001" in out
    path = run_dir / "model.torchscript.pt"
    module = torch.jit.load(str(path))
    for n in (2, 6):
        batch = _batch(n, seed=10 + n)
        with torch.no_grad():
            got = module(batch).numpy()
        assert np.abs(got - _pytorch_logits(run_dir, batch)).max() < 1e-4
    assert json.loads((run_dir / "model.torchscript.pt.json").read_text())["format"] == "torchscript"
    path.unlink()
    (run_dir / "model.torchscript.pt.json").unlink()


def test_an_export_that_does_not_match_fails_and_writes_nothing(run_dir, tmp_path, monkeypatch):
    real_runner = backends.torchscript_runner

    def off_by_a_little(data: bytes):
        run, what = real_runner(data)
        return (lambda images: run(images) + 1e-3), what

    monkeypatch.setattr(backends, "torchscript_runner", off_by_a_little)
    target = tmp_path / "bad.pt"
    with pytest.raises(TransferkitError, match=r"bad\.pt: the torchscript export differs from PyTorch by 0\.001"):
        export_run(run_dir, "torchscript", output=target)
    assert list(tmp_path.iterdir()) == []


def _copy(run_dir: Path, to: Path) -> Path:
    shutil.copytree(run_dir, to, ignore=shutil.ignore_patterns("*.onnx*", "*.pt*", "checkpoints"))
    return to


def _unrecorded(damage):
    """The damage done to a run written before checksums existed (no checksums.json)."""
    return lambda run: ((run / "checksums.json").unlink(), damage(run))


def _cut_weights(run):
    (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:200])


def _cut_manifest(run):
    (run / "manifest.json").write_text('{"format": "transferkit.cla')


# a damaged file is refused by its recorded sha256 (exit 2); without a record, by what it holds
@pytest.mark.parametrize(
    "damage, code, message",
    [
        (_cut_weights, 2, r"model\.safetensors: its sha256 differs from the one recorded"),
        (_unrecorded(_cut_weights), 2, r"model\.safetensors: not a readable safetensors file"),
        (lambda run: (run / "model.safetensors").unlink(), 1, r"no model\.safetensors; the run did not finish"),
        (_cut_manifest, 2, r"manifest\.json: its sha256 differs from the one recorded"),
        (_unrecorded(_cut_manifest), 2, r"manifest\.json: not valid JSON"),
        (lambda run: (run / "manifest.json").unlink(), 1, r"no manifest\.json"),
    ],
    ids=["truncated-weights", "truncated-weights-unrecorded", "no-weights", "cut-manifest", "cut-manifest-unrecorded",
         "no-manifest"],
)
def test_a_corrupt_or_unfinished_run_is_one_line_and_leaves_nothing(run_dir, tmp_path, capsys, damage, code, message):
    run = _copy(run_dir, tmp_path / "run")
    damage(run)
    before = sorted(p.name for p in run.iterdir())
    assert main(["export", str(run), "--format", "onnx"]) == code
    err = capsys.readouterr().err
    # a run without checksums.json is also read with a one-line "read unverified" notice (issue 24, item 5)
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("transferkit: read unverified: "))
    assert err.count("\n") == 1 and err.startswith("transferkit: error: ")
    assert __import__("re").search(message, err), err
    assert sorted(p.name for p in run.iterdir()) == before


def test_option_errors_are_one_line(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--format", "torchscript", "--opset", "17"]) == 1
    assert "--opset 17: applies to --format onnx only" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--format", "onnx", "--batch-size", "0"]) == 1
    assert "--batch-size 0: must be at least 1" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--format", "onnx"]) == 1
    assert "no such run directory" in capsys.readouterr().err


def _untrained_run(backbone: str, weights: str, folder: Path, size: int, readout: str = "pooled") -> Path:
    """A run directory as a finished run leaves it, for a real backbone (no training needed)."""
    model = Classifier(create_backbone(backbone, weights=weights, readout=readout), ["a", "b", "c", "d"], dropout=0.2).eval()
    spec = {"name": backbone, "weights": weights, "params": {}, "readout": readout}
    write_model_files(model, folder, backbone=spec, preprocessing={
        "image_size": size, "resize_shorter_side": int(round(size / 0.875)), "center_crop": size,
        "mean": list(model.data_config["mean"]), "std": list(model.data_config["std"]), "channels": "RGB", "scale": "pixel / 255",
    })
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("backbone, weights, readout", [
    ("timm/tf_efficientnet_lite0", "imagenet", "pooled"),
    ("timm/tf_efficientnet_lite0", "imagenet", "stages"),  # the default recipe's: pooled + the last two stages
    pytest.param("resnets/resnet18", "none", "pooled",
                 marks=needs_plugin_component("backbone", "resnets/resnet18", "transferkit-resnets")),
])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_real_backbones_export_within_tolerance(backbone, weights, readout, fmt, tmp_path):
    run = _untrained_run(backbone, weights, tmp_path / "run", 96, readout)
    result = export_run(run, fmt)
    assert result.max_abs_diff <= TOLERANCE and result.path.is_file()


def test_an_opset_the_exporter_cannot_reach_is_one_line_and_an_explicit_one_is_recorded(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--format", "onnx", "--opset", "13", "--output", str(tmp_path / "old.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--opset 13: torch.onnx.export could not convert the model to opset 13 (it gave opset 18)" in err
    assert list(tmp_path.iterdir()) == []
    result = export_run(run_dir, "onnx", output=tmp_path / "m18.onnx", opset=18, batch_size=3)
    assert result.manifest["opset"] == 18 and result.manifest["verification"]["real_images"] == 3
    assert result.manifest["verification"]["random_batches"] == [3]


def _follow_the_json(path: Path, record: dict) -> np.ndarray:
    """A deployment script that knows nothing of transferkit: the export's JSON, read literally
    ("decode", then "preprocessing", then "input"), with PIL and numpy. The images here are already
    at resize_shorter_side, so the resize is the identity and only the centre crop remains."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # decode: 16-bit grey
            values = np.asarray(image, dtype=np.float64)
            pixel = np.round(values * 255 / 65535) if values.max() > 255 else values
            pixel = np.repeat(pixel.astype(np.uint8)[..., None], 3, axis=-1)
        elif image.mode == "F":  # decode: 32-bit float
            values = np.asarray(image, dtype=np.float64)
            top = values.max()
            scaled = values * 255 if top <= 1 else values if top <= 255 else values / 257
            pixel = np.repeat(np.clip(np.round(scaled), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
        else:  # 8-bit, and 48-bit RGB (Pillow keeps the high byte)
            pixel = np.asarray(image.convert("RGB"))
    pre = record["preprocessing"]
    crop, (h, w) = pre["center_crop"], pixel.shape[:2]
    top, left = (h - crop) // 2, (w - crop) // 2
    x = pixel[top : top + crop, left : left + crop].astype(np.float32) / 255.0
    x = (x - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def test_16_bit_and_float_images_give_the_same_probabilities_through_predict_and_the_export_json(run_dir, tmp_path):
    import cv2
    from PIL import Image

    result = export_run(run_dir, "onnx", output=tmp_path / "m.onnx")
    record = json.loads(result.manifest_path.read_text())
    assert "round(value * 255 / 65535)" in record["decode"]["files"]["16-bit or 32-bit integer grey (I;16, I)"]
    side = record["preprocessing"]["resize_shorter_side"]
    ramp = np.linspace(0, 1, side * side).reshape(side, side)
    files = {"grey16_full.png": (ramp * 65535).astype(np.uint16), "grey16_dark.png": (ramp * 200).astype(np.uint16)}
    for name, values in files.items():
        Image.fromarray(values).save(tmp_path / name)
    colour = np.stack([ramp * 60000, (1 - ramp) * 65535, np.full_like(ramp, 30000)], axis=-1).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb48.png"), colour[..., ::-1])  # a 16-bit-per-channel PNG (cv2 writes BGR)
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "float.tiff")
    paths = [tmp_path / n for n in (*files, "rgb48.png", "float.tiff")]
    expected = transferkit.load(run_dir).predict_proba(paths)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    temperature = record["calibration"]["temperature"]
    for path, probs in zip(paths, expected):
        logits = session.run(None, {"images": _follow_the_json(path, record)})[0][0] / temperature
        got = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert np.abs(got - probs).max() < 1e-4, path.name
