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


def test_damaged_runs_say_so_instead_of_a_traceback_or_stopped(tiny_run, tmp_path, capsys):
    """A list-shaped or changed summary.json is "damaged", not "stopped"; a metrics.jsonl that is
    not UTF-8 or holds non-objects is read around (issue 24, items 9 and 10)."""
    root = tmp_path / "runs"
    listed = shutil.copytree(tiny_run, root / "listed")
    (listed / "summary.json").write_text("[1, 2, 3]\n")
    changed = shutil.copytree(tiny_run, root / "changed")
    summary = json.loads((changed / "summary.json").read_text())
    summary["test"]["top1"] = 1.0  # valid JSON, but not what the run wrote
    (changed / "summary.json").write_text(json.dumps(summary))
    latin = shutil.copytree(tiny_run, root / "latin")
    (latin / "summary.json").unlink()
    with open(latin / "metrics.jsonl", "ab") as fh:
        fh.write(b'{"kind": "note", "text": "caf\xe9"}\n[1, 2]\n"text"\n')
    assert main(["runs", str(root)]) == 0
    row = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "damaged (summary.json)" in row["listed"] and "damaged (summary.json)" in row["changed"]
    assert "stopped at finetune 1/1" in row["latin"]
