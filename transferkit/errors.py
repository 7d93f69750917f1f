"""Errors that are part of the interface: one line naming the file, key or plugin, and the fix."""

from __future__ import annotations

# control characters (C0, DEL, C1) and Unicode's line and paragraph separators
_ESCAPES = {c: repr(chr(c))[1:-1] for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


def printable(text: str) -> str:
    """``text`` (a file name, a reason) with its control characters written as escapes (``\\n``,
    ``\\t``, ``\\x1b``...), so a name cannot forge a line of output, split a one-line message or
    send a terminal escape sequence."""
    return str(text).translate(_ESCAPES)


class TransferkitError(Exception):
    """A user-facing error; the CLI prints ``str(error)`` on one line and exits with ``exit_code``."""

    exit_code = 1

    def __str__(self) -> str:
        return printable(" ".join(super().__str__().split()))


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


class CorruptFileError(TransferkitError):
    """A file a run wrote that no longer matches the sha256 recorded for it, or does not parse."""

    exit_code = 2


class PluginWarning(UserWarning):
    """A plugin that failed to load or failed in a hook, and was left out (the others still work)."""


class NonFiniteLossError(TransferkitError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""

    exit_code = 4


class BadFilesError(DataError):
    """Bad image files, however many: the message names the first few; a run writes the whole list
    into its folder (``RunDir.bad_images_file``) and says so, so an error stays one readable line."""

    SHOWN = 5

    def __init__(self, bad: list[tuple[str, str]], fix: str, listed_in: str | None = None) -> None:
        self.bad, self.fix, self.listed_in = list(bad), fix, listed_in
        shown = "; ".join(f"{path}: {why}" for path, why in self.bad[: self.SHOWN])
        rest = len(self.bad) - self.SHOWN
        more = f"; ... and {rest} more" if rest > 0 else ""
        where = f" (all listed in {listed_in})" if listed_in else ""
        super().__init__(f"{len(self.bad)} bad image(s): {shown}{more}{where}; {fix}")

    def listed(self, path: str) -> "BadFilesError":
        """The same error, saying where the whole list was written."""
        return BadFilesError(self.bad, self.fix, path)


class UsageError(TransferkitError):
    """An argument out of range (``--top-k 0``, an output file of an unknown kind...)."""

    exit_code = 2


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM; ``str`` says whether and where it can be resumed."""

    def __init__(self, signal_name: str = "SIGINT", message: str = "") -> None:
        super().__init__(message or f"interrupted ({signal_name})")
        self.signal_name = signal_name
        self.exit_code = 143 if signal_name == "SIGTERM" else 130
        self.saved_at: str | None = None  # "phase P, epoch E, step S" when a checkpoint was saved on the way out

    def __str__(self) -> str:
        return " ".join(str(self.args[0]).split())
