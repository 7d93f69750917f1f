"""What a plugin's own code runs under while transferkit calls it (its import, its hooks): a time
limit, and its prints kept out of a command's output.

- **Time limit** (``TRANSFERKIT_PLUGIN_TIMEOUT`` seconds, default 30; 0 turns it off). On the main
  thread of a POSIX process an alarm interrupts the import or hook with ``PluginTimeout``, which
  the plugin manager contains like any other failure: the plugin is left out with a one-line
  warning and the command goes on. Should the plugin sit in C code that the alarm cannot
  interrupt, a watchdog thread ends the process a few seconds later with one line naming the
  plugin (exit 3), rather than leaving every command hanging.
- **stdout**: what a plugin prints while it is imported or its hooks run goes to stderr, so
  ``transferkit predict`` and ``list`` print only their own lines on stdout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

TIMEOUT_ENV = "TRANSFERKIT_PLUGIN_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
WATCHDOG_GRACE = 5.0  # seconds after the alarm before the watchdog ends a process the alarm could not free
EXIT_CODE = 3  # PluginError's


class PluginTimeout(BaseException):
    """A plugin's import or hook ran past the time limit (a BaseException: the plugin's own
    ``except Exception`` does not swallow it)."""


def time_limit() -> float:
    """The limit in seconds from ``TRANSFERKIT_PLUGIN_TIMEOUT`` (0: none); a bad value is the default."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value >= 0 and value == value else DEFAULT_TIMEOUT


@contextlib.contextmanager
def plugin_code(plugin: str, what: str) -> Iterator[None]:
    """Run a plugin's ``what`` ("import", "register_backbones hook"...) with its stdout sent to
    stderr and under the time limit; ``PluginTimeout`` says which plugin and what it was doing."""
    seconds = time_limit()
    with contextlib.redirect_stdout(sys.stderr), _watchdog(plugin, what, seconds), _alarm(plugin, what, seconds):
        yield


@contextlib.contextmanager
def _alarm(plugin: str, what: str, seconds: float) -> Iterator[None]:
    usable = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or signal.getitimer(signal.ITIMER_REAL)[0] > 0:  # someone else's alarm is set: leave it alone
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise PluginTimeout(f"its {what} took more than {seconds:g} s (the limit, {TIMEOUT_ENV})")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _watchdog(plugin: str, what: str, seconds: float) -> Iterator[None]:
    if seconds <= 0:
        yield
        return

    def stuck() -> None:
        sys.__stderr__.write(
            f"transferkit: error: plugin {plugin!r}: its {what} has not finished after {seconds + WATCHDOG_GRACE:g} s;"
            f" fix or uninstall it, skip it with TRANSFERKIT_DISABLE_PLUGINS={plugin}, or raise {TIMEOUT_ENV}\n"
        )
        sys.__stderr__.flush()
        os._exit(EXIT_CODE)

    timer = threading.Timer(seconds + WATCHDOG_GRACE, stuck)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
