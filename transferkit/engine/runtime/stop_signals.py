"""Clean stops: SIGINT and SIGTERM end a run the same way. During training steps the run finishes
the step it is in, saves a resumable checkpoint there and stops; anywhere else (decoding, the
feature cache, evaluation) it stops at once, keeping the last checkpoint. A second signal always
stops at once. The message says where the checkpoint is, and offers ``--resume`` only when there
is one (``run.interrupted``)."""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import Iterator

from ...errors import RunInterrupted
from ..rundir.layout import MARKER_FILE
from ..rundir.own_files import has_marker, is_regular
from ..rundir.run_dir import RunDir

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    """Set by the signal handler; the trainer looks at it between steps."""

    signal_name: str | None = None
    graceful: bool = False  # True while training steps run: finish the step, save, then stop

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    @contextlib.contextmanager
    def steps(self) -> Iterator[None]:
        """Training steps run inside: a signal waits for the end of the current step."""
        self.graceful = True
        try:
            yield
        finally:
            self.graceful = False


@contextlib.contextmanager
def stop_signals(graceful: bool = True) -> Iterator[StopRequest]:
    """SIGINT and SIGTERM handled alike for the block (main thread only; elsewhere the handlers
    stay as they are). ``graceful=False`` (several processes, which must stop at the same step)
    stops at once on the first signal."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if graceful and request.graceful and not request.requested:
            request.signal_name = name
            return
        request.signal_name = request.signal_name or name
        raise RunInterrupted(name)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def interrupted(run: RunDir | None, exc: KeyboardInterrupt) -> RunInterrupted:
    """The one-line end of a stopped run: where its checkpoint is and how to continue, or, with no
    checkpoint yet, that there is nothing to resume (what the run had written is removed)."""
    name = getattr(exc, "signal_name", "SIGINT")
    saved_at = getattr(exc, "saved_at", None)
    if run is None:
        return RunInterrupted(name, f"stopped by {name} before the run started; nothing was written")
    if run.has_checkpoint:
        where = f"saved a checkpoint at {saved_at}" if saved_at else "the last checkpoint is kept"
        return RunInterrupted(
            name, f"stopped by {name}; {where} ({run.last_checkpoint}): continue with transferkit finetune --resume {run.path}"
        )
    run.remove_leftovers()
    own = {".lock", MARKER_FILE}
    if has_marker(run.path) and {p.name for p in run.path.iterdir()} <= own:
        for file in own:
            if is_regular(run.path / file):
                (run.path / file).unlink()
        run.path.rmdir()  # a folder only this run had made: nothing left in it
    return RunInterrupted(name, f"stopped by {name} before the first checkpoint; nothing to resume: start the run again")
