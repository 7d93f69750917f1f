"""A whole run against what goes wrong around it: file names that are not UTF-8, a death before the
first checkpoint, a full disk."""

from __future__ import annotations

import errno
import json
import os

import pytest
from PIL import Image

import transferkit
from transferkit.cli import main
from transferkit.engine.rundir import artifacts
from transferkit.engine.training import trainer
from transferkit.testing import write_recipe


def test_file_names_that_are_not_utf8_survive_every_file_a_run_writes(tiny_recipe, image_folder, tmp_path, capsys):
    raw = os.fsencode(image_folder / "train" / "red") + b"/bad_\xff\xfe.png"  # Latin-1 bytes, not UTF-8
    with open(raw, "wb") as fh:
        fh.write(b"not an image")
    Image.new("RGB", (40, 40), (200, 40, 40)).save(os.fsdecode(os.fsencode(image_folder / "test" / "red") + b"/ok_\xe9.png"))
    tiny_recipe["data"]["on_bad_image"] = "skip"
    tiny_recipe["phases"]["finetune"]["epochs"] = 1
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["finetune", str(recipe), "--output", str(tmp_path / "run")]) == 0
    run = tmp_path / "run"
    listed = (run / "skipped_images.txt").read_bytes()
    assert listed.split(b"\t")[0] == raw  # the file's own bytes, so a tool can find it again
    summary = json.loads((run / "summary.json").read_text())
    assert os.fsencode(summary["skipped_images"][0]["file"]) == raw
    assert "skipped   1 bad image(s)" in capsys.readouterr().out
    assert main(["report", str(run)]) == 0 and (run / "report.html").is_file()
    assert main(["predict", str(run), str(image_folder / "test" / "red")]) == 0
    assert "ok_\\udce9.png" in capsys.readouterr().out  # printed escaped, not a UnicodeEncodeError


def test_a_run_that_died_before_its_first_checkpoint_is_cleaned_when_started_again(tiny_recipe, tmp_path, monkeypatch, capsys):
    tiny_recipe["phases"] = {"extract": {"epochs": 1, "lr": 0.05, "solver": "sgd"}, "finetune": {"epochs": 1}}
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    run = tmp_path / "run"

    def out_of_memory(self, *args):
        raise MemoryError  # as an OOM kill would, after the epoch's metrics and before last.pt
    monkeypatch.setattr(trainer.Trainer, "_save_last", out_of_memory)
    assert main(["finetune", str(recipe), "--output", str(run)]) == 1
    assert "out of memory" in capsys.readouterr().err
    monkeypatch.undo()
    assert (run / "metrics.jsonl").read_text().count('"kind": "epoch"') == 1  # what it left
    (run / "checkpoints").mkdir(exist_ok=True)
    stale = run / "checkpoints" / ".last.pt.k2x9q0az.tmp"  # a temp file a killed write leaves
    stale.write_bytes(b"\0" * 1000)

    assert main(["finetune", "--resume", str(run)]) == 1
    assert "stopped before its first checkpoint, so there is nothing to resume" in capsys.readouterr().err

    assert main(["finetune", str(recipe), "--output", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"removed what a run that died before its first checkpoint left in {run}" in out
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["epoch"]) for r in epochs if r["kind"] == "epoch"] == [("extract", 1), ("finetune", 1)]
    assert not stale.exists()


def test_a_full_disk_is_one_line_and_the_last_checkpoint_stays(tiny_recipe, tmp_path, monkeypatch, capsys):
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    real_fsync, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > 12:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(artifacts.os, "fsync", fsync)
    assert main(["finetune", str(recipe), "--output", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write it (No space left on device); free some disk space" in err
    monkeypatch.undo()
    assert not [p for p in (tmp_path / "run").rglob(".*.tmp")]  # no half-written temp file left
    if (tmp_path / "run" / "checkpoints" / "last.pt").exists():
        transferkit.engine.rundir.checkpoint_io.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")


@pytest.fixture(autouse=True)
def _no_leaked_handlers():
    yield
    import signal
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)
