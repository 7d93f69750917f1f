"""Only what transferkit provably wrote is removed, and nothing is written or deleted through a
planted symbolic link (issue 24, items 1 and 2)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from transferkit.cli import main
from transferkit.engine import prepare
from transferkit.engine.rundir.own_files import has_marker
from transferkit.engine.rundir.run_dir import RunDir
from transferkit.errors import TransferkitError
from transferkit.testing import write_recipe


def _no_decoding(monkeypatch):
    monkeypatch.setattr(prepare, "decode_splits", lambda *a, **k: pytest.fail("decoded before refusing --output"))


def test_a_project_folder_with_its_own_checkpoints_is_refused_and_nothing_removed(tiny_recipe, tmp_path, capsys, monkeypatch):
    _no_decoding(monkeypatch)
    project = tmp_path / "p"
    (project / "checkpoints").mkdir(parents=True)
    (project / "checkpoints" / "a.ckpt").write_text("x")
    (project / "recipe.toml").write_text("# the user's own\n")
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["finetune", str(recipe), "--output", str(project)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds recipe.toml, checkpoints that transferkit did not write" in err
    assert (project / "checkpoints" / "a.ckpt").read_text() == "x"
    assert (project / "recipe.toml").read_text() == "# the user's own\n"
    assert sorted(p.name for p in project.iterdir()) == ["checkpoints", "recipe.toml"]


def test_in_a_run_folder_only_the_runs_own_names_are_removed(tmp_path):
    run = RunDir.create(_recipe_named("r"), tmp_path / "run")
    assert has_marker(run.path)
    (run.path / "metrics.jsonl").write_text("{}\n")
    run.checkpoints.mkdir()
    (run.checkpoints / "a.ckpt").write_text("mine")  # put there by the user
    (run.checkpoints / ".last.pt.k2x9q0az.tmp").write_bytes(b"\0")
    (run.checkpoints / "phase1.safetensors").write_bytes(b"\0")
    (run.path / ".bashrc.12345678").write_text("not a temp file of ours")
    assert sorted(run.remove_leftovers()) == ["metrics.jsonl"]  # checkpoints/ stays: it holds a.ckpt
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["a.ckpt"]
    assert (run.path / ".bashrc.12345678").exists()


def test_a_folder_without_the_marker_loses_nothing(tmp_path):
    folder = tmp_path / "old"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("{}\n")
    assert RunDir(folder).leftovers() == [] and RunDir(folder).remove_leftovers() == []
    assert (folder / "metrics.jsonl").exists()


def test_a_lock_planted_as_a_link_is_refused_and_its_target_kept(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(target, run / ".lock")
    with pytest.raises(TransferkitError, match=r"\.lock: cannot open it \(a symbolic link\)"):
        with RunDir(run).lock():
            pass
    assert target.read_text() == "keep me"


def test_a_checkpoints_link_in_output_is_one_line_and_its_target_kept(tiny_recipe, tmp_path, capsys, monkeypatch):
    _no_decoding(monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.ckpt").write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere, out / "checkpoints")
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    assert main(["finetune", str(recipe), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoints is a symbolic link" in err
    assert [p.name for p in elsewhere.iterdir()] == ["a.ckpt"]


def test_metrics_are_never_appended_through_a_link(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    os.symlink(target, run.metrics_file)
    with pytest.raises(TransferkitError, match="a symbolic link"):
        run.append_metrics({"kind": "epoch"})
    with pytest.raises(TransferkitError, match="metrics.jsonl is a symbolic link"):
        with run.lock():
            pass
    assert target.read_text() == "keep me"



def _recipe_named(name):
    return SimpleNamespace(name=name)  # RunDir.create reads only the name
