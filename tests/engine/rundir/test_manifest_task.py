"""A manifest's task (issue 26): no ``task`` key is single-label, as every run before; a multi-label
manifest's thresholds are read as floats in ``classes`` order, and missing or ill-fitting ones are
refused in one line naming the file, by ``transferkit.load`` and by the command line alike."""

from __future__ import annotations

import numpy as np
import pytest

import transferkit
from transferkit.cli import main
from transferkit.engine.rundir.manifest_task import (
    activation_of,
    multilabel_entries,
    task_of,
    threshold_rule,
    thresholds_of,
)
from transferkit.errors import CorruptFileError

from ...multilabel_runs import LABELS, edit_manifest, labelled_images, multilabel_run  # noqa: F401 (fixtures)

CLASSES = ["a", "b", "c"]


def test_a_manifest_without_task_is_single_label_with_softmax():
    assert task_of({"classes": CLASSES}) == "single" and activation_of({"classes": CLASSES}) == "softmax"
    assert task_of({"task": "single"}) == "single"
    with pytest.raises(ValueError, match="single-label manifest has no per-label thresholds"):
        thresholds_of({"classes": CLASSES})


def test_multilabel_thresholds_are_floats_in_class_order_with_their_rule():
    manifest = {"classes": CLASSES, **multilabel_entries([0.25, 1, 0.0], "precision 0.9")}
    assert manifest["task"] == "multilabel" and manifest["thresholds"] == {"rule": "precision 0.9", "values": [0.25, 1.0, 0.0]}
    assert task_of(manifest) == "multilabel" and activation_of(manifest) == "sigmoid"
    values = thresholds_of(manifest)
    assert values.dtype == np.float64 and values.tolist() == [0.25, 1.0, 0.0]
    assert threshold_rule(manifest) == "precision 0.9" and threshold_rule({"classes": CLASSES}) is None
    with pytest.raises(ValueError, match="thresholds: value 1 is nan"):
        multilabel_entries([0.5, float("nan")], "f1")


@pytest.mark.parametrize("thresholds, problem", [
    (None, "it has none"),
    ({"rule": "f1"}, "it has none"),
    ([0.5, 0.5, 0.5], "it has none"),  # a bare list, not {"rule", "values"}
    ({"rule": "f1", "values": [0.5, 0.5]}, "it has 2 values for 3 classes"),
    ({"rule": "f1", "values": [0.5, 0.5, 0.5, 0.5]}, "it has 4 values for 3 classes"),
    ({"rule": "f1", "values": [0.5, "0.5", 0.5]}, "value 1 is '0.5'"),
    ({"rule": "f1", "values": [0.5, 0.5, 1.5]}, "value 2 is 1.5"),
    ({"rule": "f1", "values": [0.5, None, 0.5]}, "value 1 is None"),
    ({"rule": "f1", "values": "0.5"}, "its values are a str, not a list"),
])
def test_bad_thresholds_are_one_line_naming_the_file_and_the_fix(thresholds, problem):
    manifest = {"classes": CLASSES, "task": "multilabel", **({"thresholds": thresholds} if thresholds is not None else {})}
    with pytest.raises(CorruptFileError) as caught:
        thresholds_of(manifest, "run/manifest.json")
    message = str(caught.value)
    assert message.startswith('run/manifest.json: a multilabel manifest needs "thresholds"') and "\n" not in message
    assert f"; {problem}: restore the run's own manifest.json, or train it again" in message


def test_an_unknown_task_is_refused_naming_the_file():
    with pytest.raises(CorruptFileError, match=r"^run/manifest.json: \"task\" is 'multiclass', which this transferkit does not know"):
        task_of({"task": "multiclass"}, "run/manifest.json")


def test_loading_a_run_with_bad_thresholds_is_refused_in_one_line(multilabel_run, labelled_images, capsys):
    assert transferkit.load(multilabel_run).task == "multilabel"
    edit_manifest(multilabel_run, thresholds={"rule": "f1", "values": [0.5] * (len(LABELS) - 1)})
    with pytest.raises(CorruptFileError, match=f"{multilabel_run / 'manifest.json'}: a multilabel manifest needs"):
        transferkit.load(multilabel_run)
    commands = (["predict", str(multilabel_run), str(labelled_images / "test")],
                ["export", str(multilabel_run), "--format", "torchscript"])
    for command in commands:
        assert main(command) == 2
        err = "".join(line for line in capsys.readouterr().err.splitlines(keepends=True) if not line.startswith("predicting with"))
        assert err.count("\n") == 1 and f"it has {len(LABELS) - 1} values for {len(LABELS)} classes" in err
        assert err.startswith(f"transferkit: error: {multilabel_run / 'manifest.json'}: ")
    assert not (multilabel_run / "model.torchscript.pt").exists()
