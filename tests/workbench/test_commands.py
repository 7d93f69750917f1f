"""The workbench command modules: the light CLI shells agree with the modules doing the work."""

from __future__ import annotations

import argparse

from transferkit.workbench import audit, check, command_modules, export
from transferkit.workbench.audit import label_scores, similarity
from transferkit.workbench.check.sanity_checks import DEFAULT_STEPS
from transferkit.workbench.export.verified_file import FORMATS


def test_every_command_module_has_the_four_names():
    for module in command_modules():
        assert isinstance(module.NAME, str) and isinstance(module.HELP, str), module.__name__
        assert callable(module.add_arguments) and callable(module.run), module.__name__


def _help_of(module, option: str) -> str:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return next(a for a in parser._actions if option in a.option_strings).help


def test_the_shells_repeat_what_the_work_defines():
    steps = _help_of(check, "--steps")
    assert f"default {DEFAULT_STEPS['head']} for the head, {DEFAULT_STEPS['full']} with --full-model" in steps
    assert set(export.FORMATS) == set(FORMATS)
    assert audit.DEFAULT_FOLDS == label_scores.DEFAULT_FOLDS
    assert audit.FEATURE_SIMILARITY == similarity.FEATURE_SIMILARITY
