"""The malformed-recipe corpus: each file in tests/recipes_malformed/ states, on its first line,
the one-line error it must produce (``# expect: ...``); the CLI exits 2 and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferkit.cli import main
from transferkit.errors import RecipeError
from transferkit.recipe_loading import load_recipe

ROOT = Path(__file__).resolve().parents[1]
CORPUS = sorted((ROOT / "tests" / "recipes_malformed").glob("*.toml"))


def test_corpus_has_at_least_25_cases():
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_malformed_recipe_gives_its_one_line_error(path, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(ROOT)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: <message>'"
    expected = first[len("# expect: ") :]
    relative = str(path.relative_to(ROOT))
    with pytest.raises(RecipeError) as info:
        load_recipe(relative)
    message = str(info.value)
    assert message.startswith(f"{relative}: ") and expected in message and "\n" not in message
    assert main(["finetune", relative, "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.count("\n") == 0
    assert not (tmp_path / "run").exists()
