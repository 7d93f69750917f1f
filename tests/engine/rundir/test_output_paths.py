"""Protected run folders: no command writes over a run's own files, and an unusable --output fails
before any image is decoded."""

from __future__ import annotations

import os

import pytest

from transferkit.cli import main
from transferkit.engine import prepare
from transferkit.engine.rundir import output_paths
from transferkit.testing import write_recipe


def _snapshot(run):
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}


@pytest.mark.parametrize("target", ["model.safetensors", "manifest", "checkpoints/last.pt"])
def test_export_onto_the_runs_own_files_is_refused(tiny_run, capsys, target):
    before = _snapshot(tiny_run)
    assert main(["export", str(tiny_run), "--format", "torchscript", "--output", str(tiny_run / target)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"is one of the files of run {tiny_run}" in err
    assert _snapshot(tiny_run) == before


def test_report_onto_the_runs_files_is_refused_before_predicting(tiny_run, capsys, monkeypatch):
    monkeypatch.setattr("transferkit.workbench.report.content.gather", lambda *a, **k: pytest.fail("predicted first"))
    assert main(["report", str(tiny_run), "--output", str(tiny_run / "checkpoints" / "report.html")]) == 1
    assert "is one of the files of run" in capsys.readouterr().err


def test_a_bad_finetune_output_fails_before_any_image_is_decoded(tiny_recipe, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(prepare, "decode_splits", lambda *a, **k: pytest.fail("decoded before checking --output"))
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    (tmp_path / "a-file").write_text("not a folder")
    assert main(["finetune", str(recipe), "--output", str(tmp_path / "a-file")]) == 1
    assert "a-file: is a file, not a folder" in capsys.readouterr().err
    locked = tmp_path / "read-only"
    locked.mkdir()
    # a read-only folder (as root every folder is writable: a stand-in answers for this one)
    real = output_paths.writable
    monkeypatch.setattr(output_paths, "writable", lambda folder: os.path.abspath(folder) != str(locked) and real(folder))
    assert main(["finetune", str(recipe), "--output", str(locked / "run")]) == 1
    assert f"the folder {locked} is not writable" in capsys.readouterr().err
    assert not (locked / "run").exists()


def test_a_new_run_inside_another_runs_checkpoints_is_refused(tiny_run, tiny_recipe, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["finetune", str(recipe), "--output", str(tiny_run / "checkpoints" / "more")]) == 1
    assert "is one of the files of run" in capsys.readouterr().err


def test_a_plugins_new_model_folder_cannot_be_the_run_itself(tiny_run):
    import transferkit
    from transferkit import TransferkitError

    run = transferkit.RunDir(tiny_run)
    state = transferkit.load(tiny_run).model.state_dict()
    before = _snapshot(tiny_run)
    with pytest.raises(TransferkitError, match="is one of the files of run"):
        run.write_model_folder(tiny_run, state)  # e.g. average-checkpoints RUN --output RUN
    assert _snapshot(tiny_run) == before
    assert transferkit.load(run.write_model_folder(tiny_run / "average", state).path).classes == run.read_summary()["classes"]
