"""Progress feedback for long loops (decoding, feature caching, epochs, evaluation, export).

When stderr is a terminal: tqdm bars that vanish when done. Otherwise (CI, a log file, a
notebook's captured stderr) a bar would be noise or nothing: a heartbeat line every
``TRANSFERKIT_PROGRESS_SECONDS`` seconds (default 30) says where the loop is and how long is
left. ``TRANSFERKIT_PROGRESS`` = ``bars`` | ``lines`` | ``off`` forces one; ``quiet()`` silences
both (``transferkit.finetune(quiet=True)``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from typing import Any, Iterable, Iterator, TextIO

from tqdm import tqdm

DEFAULT_SECONDS = 30.0
_silenced: contextvars.ContextVar[bool] = contextvars.ContextVar("transferkit_progress_silenced", default=False)


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """No bars and no heartbeat lines inside the block (when ``enabled``)."""
    token = _silenced.set(enabled or _silenced.get())
    try:
        yield
    finally:
        _silenced.reset(token)


def mode(stream: TextIO | None = None) -> str:
    """``bars``, ``lines`` or ``off``: what ``progress`` shows here and now."""
    if _silenced.get():
        return "off"
    forced = os.environ.get("TRANSFERKIT_PROGRESS", "").strip().lower()
    if forced in ("bars", "lines", "off"):
        return forced
    stream = stream or sys.stderr
    return "bars" if getattr(stream, "isatty", lambda: False)() else "lines"


def heartbeat_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("TRANSFERKIT_PROGRESS_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


class Heartbeat:
    """tqdm's small interface (iterate, ``update``, ``set_postfix``, ``close``, ``with``) that
    prints one line to stderr at most every ``every`` seconds, and nothing for a loop shorter than that."""

    def __init__(self, iterable: Iterable[Any] | None, total: int | None, desc: str, unit: str, every: float) -> None:
        self.iterable, self.total, self.desc, self.unit, self.every = iterable, total, desc, unit, every
        self.n, self.postfix = 0, ""
        self.started = self.last = time.monotonic()

    def __iter__(self) -> Iterator[Any]:
        for item in () if self.iterable is None else self.iterable:
            yield item
            self.update(1)

    def __enter__(self) -> "Heartbeat":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            print(self.line(now), file=sys.stderr, flush=True)

    @property
    def units(self) -> str:
        return self.unit + ("es" if self.unit.endswith(("ch", "sh", "s", "x")) else "s")

    def line(self, now: float) -> str:
        elapsed = now - self.started
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        left = ""
        if self.total and self.n:
            left = f", about {elapsed / self.n * (self.total - self.n):.0f} s left"
            done += f" {self.units} ({100 * self.n / self.total:.0f}%)"
        else:
            done += f" {self.units}"
        return f"  ... {self.desc}: {done}, {elapsed:.0f} s{left}{self.postfix}"

    def set_postfix(self, **values: Any) -> None:
        self.postfix = "; " + ", ".join(f"{k} {v}" for k, v in values.items()) if values else ""

    def close(self) -> None:
        pass


class _Silent(Heartbeat):
    def update(self, n: int = 1) -> None:
        self.n += n


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str, unit: str = "batch") -> Any:
    """A bar, a heartbeat or nothing (see the module's docstring) around ``iterable``; also usable
    without one, through ``update(n)``."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    shown = mode()
    if shown == "bars":
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
    if shown == "lines":
        return Heartbeat(iterable, total, desc, unit, heartbeat_seconds())
    return _Silent(iterable, total, desc, unit, 0.0)
