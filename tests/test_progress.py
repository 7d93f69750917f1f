"""Progress feedback: bars on a terminal, heartbeat lines in logs, none when quiet; every long
loop of a run reports through it; the command's first line comes before the heavy imports."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import transferkit
from transferkit.progress import Heartbeat, mode, progress, quiet
from transferkit.testing import write_recipe

FIRST_LINE_PROBE = """
import sys
class First:
    def __init__(self, stream):
        self.stream = stream
    def write(self, text):
        if text.strip():
            self.stream.write("TORCH LOADED\\n" if "torch" in sys.modules else "FIRST LINE BEFORE TORCH\\n")
            self.stream.flush()
            raise SystemExit(0)
        return len(text)
    def flush(self):
        pass
sys.stdout = First(sys.stdout)
from transferkit.cli import main
main(["finetune", sys.argv[1]])
"""


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_on_a_terminal_lines_elsewhere_nothing_when_quiet(monkeypatch):
    monkeypatch.delenv("TRANSFERKIT_PROGRESS", raising=False)
    assert mode(_Tty()) == "bars" and mode(io.StringIO()) == "lines"
    with quiet():
        assert mode(_Tty()) == "off"
    monkeypatch.setenv("TRANSFERKIT_PROGRESS", "off")
    assert mode(_Tty()) == "off"


def test_a_heartbeat_line_says_where_the_loop_is(monkeypatch, capsys):
    monkeypatch.setenv("TRANSFERKIT_PROGRESS", "lines")
    monkeypatch.setenv("TRANSFERKIT_PROGRESS_SECONDS", "0")
    bar = progress(range(4), desc="finetune, epoch 1/3")
    assert isinstance(bar, Heartbeat) and list(bar) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and lines[-1].startswith("  ... finetune, epoch 1/3: 4/4 batches (100%), 0 s, about 0 s left")


def test_every_long_part_of_a_run_reports_progress(tiny_recipe, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("TRANSFERKIT_PROGRESS", "lines")
    monkeypatch.setenv("TRANSFERKIT_PROGRESS_SECONDS", "0")
    tiny_recipe["train"].update(final="auto", calibrate="always")  # every part: the final choice and calibration too
    transferkit.finetune(tiny_recipe, output=tmp_path / "run", phases__finetune__epochs=1)
    err = capfd.readouterr().err
    for part in ("decoding images:", "train features 1/1:", "phase finetune, epoch 1/1:", "val:", "test:"):
        assert f"  ... {part}" in err, part


def test_the_first_line_comes_before_torch_is_imported(tiny_recipe, tmp_path):
    """Plugins enabled (the installed ones import torch when their commands are listed): a core
    command's parser does not list them, so its first line comes before any heavy import."""
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe)
    env = {k: v for k, v in os.environ.items() if k != "TRANSFERKIT_DISABLE_PLUGINS"}
    done = subprocess.run([sys.executable, "-c", FIRST_LINE_PROBE, str(recipe)], capture_output=True, text=True, timeout=300, env=env)
    assert done.stdout.strip() == "FIRST LINE BEFORE TORCH", done.stderr
