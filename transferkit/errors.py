"""Errors that are part of the interface: one line naming the file, key or plugin, and the fix."""

from __future__ import annotations


class TransferkitError(Exception):
    """A user-facing error; the CLI prints ``str(error)`` on one line and exits with ``exit_code``."""

    exit_code = 1

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


class RecipeError(TransferkitError):
    """A recipe that does not validate (unknown key, wrong type, missing file...)."""

    exit_code = 2


class PluginError(TransferkitError):
    """A plugin that failed to load, registered a duplicate name, or built a broken component."""

    exit_code = 3


class UnknownComponentError(TransferkitError, LookupError):
    """A name that no registered plugin provides."""

    exit_code = 2


class DataError(TransferkitError):
    """A dataset that cannot be trained on as it is (bad images, empty classes...)."""

    exit_code = 2


class WeightsError(TransferkitError):
    """Pretrained weights that cannot be found, verified or loaded."""

    exit_code = 2


class NonFiniteLossError(TransferkitError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""

    exit_code = 4
