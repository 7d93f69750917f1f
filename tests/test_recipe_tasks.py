"""``task``: a single-label recipe is as before; a multi-label one is refused, in one line naming
the key, what it cannot do yet."""

from __future__ import annotations

import pytest

from transferkit.errors import RecipeError
from transferkit.recipe_loading import load_recipe

MULTI = {"task": "multilabel", "data": {"source": "csv", "root": "labels.csv"}}


def test_a_single_label_recipe_reads_as_before() -> None:
    recipe = load_recipe({}, check_data=False)
    assert recipe.task == "single" and recipe.multilabel is None and recipe.data.label_separator == ";"


def test_a_multilabel_recipe_reads_with_its_defaults() -> None:
    recipe = load_recipe({**MULTI, "multilabel": {"threshold": 0.9}}, check_data=False)
    assert recipe.task == "multilabel" and recipe.multilabel.threshold == 0.9 and recipe.multilabel.pos_weight == "none"


@pytest.mark.parametrize(("extra", "key"), [
    ({"data": {"source": "imagefolder", "root": "x"}}, "data.source"),
    ({"data": {"source": "csv"}}, "data.root"),
    ({"train": {"early_stopping": {"patience": 2}}}, "train.early_stopping"),
    ({"train": {"final": "best"}}, "train.final"),
    ({"train": {"folds": 5}}, "train.folds"),
    ({"train": {"class_weights": "balanced"}}, "train.class_weights"),
    ({"phases": {"extract": {"solver": "sgd"}}}, "phases.extract.solver"),
    ({"data": {"source": "csv", "root": "labels.csv", "unknown": "other"}}, "data.unknown"),
])
def test_what_a_multilabel_run_does_not_do_is_refused_naming_the_key(extra: dict, key: str) -> None:
    data = {**MULTI, **extra}
    with pytest.raises(RecipeError) as caught:
        load_recipe(data, check_data=False)
    message = str(caught.value)
    assert key in message and "\n" not in message


@pytest.mark.parametrize("extra", [{"multilabel": {"threshold": "f1"}}, {"data": {"label_separator": "|"}}])
def test_multilabel_settings_in_a_single_label_recipe_are_refused(extra: dict) -> None:
    with pytest.raises(RecipeError, match='task = "multilabel"'):
        load_recipe(extra, check_data=False)


@pytest.mark.parametrize("bad", [",", "", "a", " "])
def test_a_separator_that_cannot_separate_is_refused(bad: str) -> None:
    with pytest.raises(RecipeError, match="label_separator"):
        load_recipe({**MULTI, "data": {**MULTI["data"], "label_separator": bad}}, check_data=False)
