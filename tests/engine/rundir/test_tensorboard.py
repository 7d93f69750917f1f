"""train.tensorboard = true: scalars per step, per epoch and per phase in RUN_DIR/tensorboard/,
beside metrics.jsonl; the writer is closed on errors too; a missing package is one line."""

from __future__ import annotations

import json
import sys

import pytest

import transferkit
from transferkit.engine.run import run_recipe
from transferkit.engine.rundir import tensorboard_sink
from transferkit.errors import RecipeError
from transferkit.recipe_loading import load_recipe

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_the_event_files_hold_step_epoch_and_test_scalars_per_phase(tiny_recipe, tmp_path):
    tiny_recipe["train"]["tensorboard"] = True
    tiny_recipe["phases"]["extract"]["solver"] = "sgd"  # step scalars in both phases
    run_dir = transferkit.finetune(tiny_recipe, output=tmp_path / "run", quiet=True).run_dir
    assert (run_dir / "metrics.jsonl").is_file()
    scalars = _scalars(run_dir / "tensorboard")
    for phase in ("extract", "finetune"):
        for tag in ("step_loss", "step_lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "test_acc"):
            assert f"{phase}/{tag}" in scalars, (phase, tag, sorted(scalars))

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch" and r["phase"] == "extract"]
    assert [s for s, _ in scalars["extract/train_loss"]] == [1, 2]
    assert [v for _, v in scalars["extract/train_loss"]] == pytest.approx([r["train_loss"] for r in epochs], rel=1e-6)
    assert [v for _, v in scalars["extract/val_acc"]] == pytest.approx([r["val_top1"] for r in epochs], rel=1e-6)
    # 27 training images in batches of 8: 4 steps per epoch, 2 epochs, numbered 1..8 within the phase
    assert [s for s, _ in scalars["finetune/step_loss"]] == list(range(1, 9))
    assert [v for _, v in scalars["extract/step_lr"]][0] == pytest.approx(0.05)
    test = next(r for r in records if r["kind"] == "test" and r["phase"] == "finetune")
    assert scalars["finetune/test_acc"][0][1] == pytest.approx(test["top1"], rel=1e-6)


def test_off_by_default(tiny_recipe, tmp_path):
    tiny_recipe["phases"]["finetune"]["epochs"] = 0
    run_dir = transferkit.finetune(tiny_recipe, output=tmp_path / "run", quiet=True).run_dir
    assert not (run_dir / "tensorboard").exists()


def test_the_writer_is_closed_when_training_fails(tiny_recipe, tmp_path, monkeypatch):
    tiny_recipe["train"]["tensorboard"] = True
    tiny_recipe["phases"]["extract"]["solver"] = "sgd"  # step scalars in both phases
    closed = []
    real_close = tensorboard_sink.TensorBoardSink.close
    monkeypatch.setattr(tensorboard_sink.TensorBoardSink, "close", lambda self: (closed.append(True), real_close(self)))

    def fail_at_step_3(info):
        if info["step"] == 3:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_recipe(load_recipe(tiny_recipe), output=tmp_path / "run", on_step=[fail_at_step_3], log=lambda _m: None)
    assert closed == [True]
    # the failing callback runs before the sink's at step 3
    assert [s for s, _ in _scalars(tmp_path / "run" / "tensorboard")["extract/step_loss"]] == [1, 2]


def test_a_missing_tensorboard_is_one_line_naming_the_key_and_writes_nothing(tiny_recipe, tmp_path, monkeypatch):
    tiny_recipe["train"]["tensorboard"] = True
    tiny_recipe["phases"]["extract"]["solver"] = "sgd"  # step scalars in both phases
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(RecipeError) as caught:
        transferkit.finetune(tiny_recipe, output=tmp_path / "run", quiet=True)
    assert str(caught.value) == (
        "train.tensorboard = true: the tensorboard package is not installed; pip install 'transferkit[tensorboard]'"
        " or set train.tensorboard = false"
    )
    assert not (tmp_path / "run").exists()
