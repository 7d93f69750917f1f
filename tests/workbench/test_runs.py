"""``transferkit runs [DIR]``: every run under DIR with its status and figures."""

from __future__ import annotations

import json
import shutil

from transferkit.cli import main


def test_runs_lists_finished_and_stopped_runs_with_their_figures(tiny_run, tmp_path, capsys):
    root = tmp_path / "runs"
    finished = shutil.copytree(tiny_run, root / "tiny" / "20260101-120000")
    stopped = shutil.copytree(tiny_run, root / "tiny" / "20260102-120000")
    (stopped / "summary.json").unlink()
    (finished / "snapshots" / "cycle-1").mkdir(parents=True)  # a model folder inside a run: not a run of its own
    shutil.copy(finished / "recipe.toml", finished / "snapshots" / "cycle-1" / "recipe.toml")
    assert main(["runs", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["run", "status", "backbone", "classes"] and len(lines) == 3
    test = json.loads((finished / "summary.json").read_text())["test"]["top1"]
    row = {line.split()[0]: line for line in lines[1:]}
    assert "finished" in row["tiny/20260101-120000"] and f"{test:.4f}" in row["tiny/20260101-120000"]
    assert "stopped at finetune 1/1" in row["tiny/20260102-120000"]
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
