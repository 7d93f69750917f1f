"""Verified artifacts: every file a run writes has its sha256 recorded and is checked when read, so a
flipped bit in a checkpoint, a model or a manifest is one line naming the file (exit 2) and nothing
is written from it."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

import pytest
import torch

import transferkit
from transferkit.cli import main
from transferkit.engine.run import run_recipe
from transferkit.engine.rundir import artifacts
from transferkit.engine.rundir.artifacts import Checksums, read_verified, write_verified
from transferkit.errors import CorruptFileError, TransferkitError
from transferkit.recipe_loading import load_recipe


def _flip_in_zip_entry(path: Path) -> None:
    """Flip one byte inside the largest stored tensor of a torch checkpoint (a zip): the file still
    unpickles, with one weight silently changed."""
    with zipfile.ZipFile(path) as archive:
        entry = max((e for e in archive.infolist() if "/data/" in e.filename), key=lambda e: e.file_size)
    data = bytearray(path.read_bytes())
    name_length = int.from_bytes(data[entry.header_offset + 26 : entry.header_offset + 28], "little")
    extra_length = int.from_bytes(data[entry.header_offset + 28 : entry.header_offset + 30], "little")
    start = entry.header_offset + 30 + name_length + extra_length
    data[start + entry.file_size // 2] ^= 0x40
    path.write_bytes(bytes(data))


def _flip_in_safetensors(path: Path) -> None:
    """Flip one byte in the tensor data (after the JSON header): the file still loads."""
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header + (len(data) - 8 - header) // 2] ^= 0x40
    path.write_bytes(bytes(data))


class Stop(Exception):
    pass


def _stopped_run(recipe_dict: dict, output: Path) -> Path:
    """A run stopped in the middle of phase 2 (a mid-epoch last.pt, phase-1 weights, no model yet)."""
    recipe_dict["train"]["checkpoint_every_steps"] = 1
    recipe_dict["data"]["batch_size"] = 6

    def stop(info):
        if (info["phase"], info["epoch"], info["step"]) == ("finetune", 0, 2):
            raise Stop

    with pytest.raises(Stop):
        run_recipe(load_recipe(recipe_dict), output=output, on_step=[stop], log=lambda m: None)
    return output


def test_a_bit_flipped_checkpoint_is_refused_by_resume_and_nothing_is_written(tiny_recipe, tmp_path, capsys):
    run = _stopped_run(tiny_recipe, tmp_path / "run")
    last = run / "checkpoints" / "last.pt"
    _flip_in_zip_entry(last)
    torch.load(last, weights_only=True)  # still loads: only the recorded sha256 can tell
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    recipe = run / "recipe.toml"
    assert main(["finetune", str(recipe), "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{last}: its sha256 differs from the one recorded" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing written, nothing trained


def test_flipped_bytes_in_the_model_are_refused_by_load_predict_evaluate_and_export(tiny_run, image_folder, capsys):
    model_file = tiny_run / "model.safetensors"
    _flip_in_safetensors(model_file)
    with pytest.raises(CorruptFileError, match=r"model\.safetensors: its sha256 differs"):
        transferkit.load(tiny_run)
    photo = next((image_folder / "test" / "red").glob("*.png"))
    for command in (["predict", str(tiny_run), str(photo)], ["evaluate", str(tiny_run)],
                    ["export", str(tiny_run), "--format", "torchscript"]):
        assert main(command) == 2, command
        captured = capsys.readouterr()
        errors = [line for line in captured.err.splitlines() if line.startswith("transferkit: error:")]
        assert len(errors) == 1 and "model.safetensors: its sha256 differs" in errors[0]  # one line, after "predicting with ..."
        assert "verified" not in captured.out
    assert not (tiny_run / "model.torchscript.pt").exists()


def test_a_manifest_with_its_classes_reordered_is_refused(tiny_run):
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    manifest["classes"] = manifest["classes"][::-1]  # would swap labels silently
    (tiny_run / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(CorruptFileError, match=r"manifest\.json: its sha256 differs"):
        transferkit.load(tiny_run)


def test_without_a_record_a_manifest_is_still_checked_against_the_head(tiny_run):
    (tiny_run / "checksums.json").unlink()  # as a run written before checksums existed
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    assert transferkit.load(tiny_run).classes == manifest["classes"]  # unrecorded files load
    manifest["classes"] = manifest["classes"] + ["purple"]
    (tiny_run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptFileError, match=r"names 4 classes but .*model\.safetensors has a head for 3"):
        transferkit.load(tiny_run)


def test_every_file_a_run_reads_back_is_recorded(tiny_run):
    top = Checksums(tiny_run).read()["sha256"]
    assert {"model.safetensors", "manifest.json", "recipe.toml", "summary.json"} <= set(top)
    kept = Checksums(tiny_run / "checkpoints").read()["sha256"]
    assert {"last.pt", "best.pt", "phase1.safetensors"} <= set(kept)
    for folder, record in ((tiny_run, top), (tiny_run / "checkpoints", kept)):
        for name, digest in record.items():
            assert artifacts.sha256_of((folder / name).read_bytes()) == digest, name


def test_kept_epochs_are_verified_for_plugins_too(tiny_recipe, tmp_path, capsys):
    tiny_recipe["train"]["keep_checkpoints"] = 2
    run = transferkit.finetune(tiny_recipe, output=tmp_path / "run", quiet=True).run_dir
    kept = transferkit.RunDir(run).kept_checkpoints()
    _flip_in_safetensors(kept[0].path)
    with pytest.raises(CorruptFileError, match=rf"{kept[0].path.name}: its sha256 differs"):
        kept[0].state_dict()
    if "average-checkpoints" in transferkit.get_plugins().registry("command"):  # the averaging plugin gets it for free
        assert main(["average-checkpoints", str(run), "--top", "2"]) == 2
        assert "its sha256 differs" in capsys.readouterr().err
        assert not (run / "average-top2").exists()


def test_resume_verifies_the_phase1_weights(tiny_recipe, tmp_path):
    run = _stopped_run(tiny_recipe, tmp_path / "run")
    _flip_in_safetensors(run / "checkpoints" / "phase1.safetensors")
    with pytest.raises(CorruptFileError, match=r"phase1\.safetensors: its sha256 differs"):
        run_recipe(load_recipe(run / "recipe.toml"), resume=run, log=lambda m: None)
    assert not (run / "model.safetensors").exists()


def test_a_crash_between_writing_a_file_and_recording_it_leaves_it_readable(tmp_path, monkeypatch):
    target = tmp_path / "state.bin"
    write_verified(target, b"old")
    calls = {"n": 0}
    real = Checksums._write

    def crash_on_the_final_record(self, record):
        calls["n"] += 1
        if calls["n"] == 2:  # the file is renamed into place; its final record is not written
            raise KeyboardInterrupt
        real(self, record)

    monkeypatch.setattr(Checksums, "_write", crash_on_the_final_record)
    with pytest.raises(KeyboardInterrupt):
        write_verified(target, b"new")
    monkeypatch.undo()
    assert read_verified(target) == b"new"  # the pending digest covers it
    target.write_bytes(b"neither")
    with pytest.raises(CorruptFileError):
        read_verified(target)


def test_a_damaged_checksums_file_is_one_line_naming_it(tmp_path):
    write_verified(tmp_path / "a.bin", b"data")
    (tmp_path / "checksums.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match=r"checksums\.json: unreadable .* delete it to use those files unverified"):
        read_verified(tmp_path / "a.bin")


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask_like_open(tmp_path, umask, mode):
    before = os.umask(umask)
    try:
        artifacts.atomic_write(tmp_path / "a.bin", lambda fh: fh.write(b"x"))
        write_verified(tmp_path / "b.json", b"{}")
    finally:
        os.umask(before)
    for name in ("a.bin", "b.json", artifacts.CHECKSUMS_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_finished_run_is_readable_by_others_under_umask_022_and_leaves_no_lock(tiny_recipe, tmp_path, umask_022):
    run = run_recipe(load_recipe(tiny_recipe, ["phases.finetune.epochs=1"]), output=tmp_path / "run", log=lambda m: None).run_dir
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {"model.safetensors", "manifest.json", "recipe.toml", "splits.csv", "summary.json", "curves.png"} <= {p.name for p in files}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files if stat.S_IMODE(p.stat().st_mode) != 0o644} == {}
    assert not (run / ".lock").exists()
    assert main(["finetune", "--resume", str(run)]) == 0  # a finished run: says so, changes nothing, leaves no lock
    assert not (run / ".lock").exists()


def _write_many(folder: Path, prefix: str, count: int) -> None:
    for i in range(count):
        write_verified(folder / f"{prefix}-{i}.bin", f"{prefix}{i}".encode())


def test_writers_in_two_processes_lose_no_record(tmp_path):
    """export beside a resumed run: each rewrites checksums.json; no update may be lost (item 4)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_write_many, args=(tmp_path, p, 25)) for p in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    recorded = Checksums(tmp_path).read()["sha256"]
    assert len(recorded) == 50
    for name in recorded:
        assert read_verified(tmp_path / name) == name.split("-")[0].encode() + name.split("-")[1][:-4].encode()


def test_a_reader_never_calls_a_file_corrupt_that_a_writer_just_replaced(tmp_path, monkeypatch):
    """The reader read the old bytes, then the writer (another process) replaced the file and its
    record: the reader re-reads under the folder's lock instead of calling the file corrupt (item 4)."""
    target = tmp_path / "manifest.json"
    write_verified(target, b"old")
    real_read = Path.read_bytes
    calls = {"n": 0}

    def read_then_replaced(self):
        data = real_read(self)
        if self == target and calls["n"] == 0:
            calls["n"] += 1
            write_verified(target, b"new")  # lands between the reader's read and its look at the record
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_replaced)
    assert read_verified(target) == b"new"


def test_a_deleted_record_is_a_notice_on_every_read(tiny_run, image_folder, capsys):
    (tiny_run / "checksums.json").unlink()
    artifacts._noticed.clear()
    assert main(["predict", str(tiny_run), str(image_folder / "test" / "red")]) == 0
    err = capsys.readouterr().err
    assert f"transferkit: read unverified: {tiny_run}/" in err and "no checksums.json beside it" in err
    assert err.count("read unverified") == 1  # one line for the folder, not one per file


def test_a_missing_entry_is_an_error_when_the_folder_has_the_record(tiny_run):
    record = json.loads((tiny_run / "checksums.json").read_text())
    del record["sha256"]["manifest.json"]
    (tiny_run / "checksums.json").write_text(json.dumps(record))
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    manifest["classes"] = manifest["classes"][::-1]  # would swap labels silently
    (tiny_run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptFileError, match=r"manifest\.json: has no entry in .*checksums\.json"):
        transferkit.load(tiny_run)


def test_a_run_from_before_checksums_and_markers_still_resumes_and_loads(tiny_recipe, tmp_path, capsys):
    run = _stopped_run(tiny_recipe, tmp_path / "run")
    for old in [*run.rglob("checksums.json"), run / ".transferkit-run"]:
        old.unlink(missing_ok=True)
    artifacts._noticed.clear()
    result = run_recipe(load_recipe(run / "recipe.toml"), resume=run, log=lambda m: None)
    assert "read unverified" in capsys.readouterr().err
    assert transferkit.load(result.run_dir).classes == ["blue", "green", "red"]
    assert "recipe.toml" in Checksums(run).read()["unverified"]  # there before the record: still readable
    transferkit.RunDir(run).read_recipe_text()


def test_the_figures_are_recorded_like_every_other_file(tiny_run):
    """The README's table says every file of a run is in checksums.json; the PNGs were not (item 10)."""
    recorded = Checksums(tiny_run).read()["sha256"]
    figures = sorted(p.name for p in tiny_run.glob("*.png"))
    assert figures and set(figures) <= set(recorded)
    for name in figures:
        assert artifacts.sha256_of((tiny_run / name).read_bytes()) == recorded[name]


def test_a_write_that_fails_for_another_reason_does_not_blame_the_disk(tmp_path, monkeypatch):
    """A temp file taken away mid-write (as a starting run once did to a live export) is not 'free some disk space'."""
    real = artifacts.os.replace

    def vanished(src, dst):
        artifacts.os.unlink(src)
        return real(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", vanished)
    with pytest.raises(TransferkitError) as info:
        write_verified(tmp_path / "model.onnx", b"data")
    assert "No such file or directory" in str(info.value) and "disk space" not in str(info.value)
