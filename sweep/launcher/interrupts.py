"""Ctrl-C and SIGTERM that never reach the launcher loop are raised again there.

Python raises KeyboardInterrupt (and sweep's SIGTERM handler, Terminated) in whatever the main thread
runs when the signal lands. When that is a finalizer (a `__del__`, a weakref callback of a database
connection pool, a garbage collection under load), Python prints "Exception ignored in ..." and the
exception is gone: the launch ran on to its end and exited 0 after the user's Ctrl-C. Each signal is
therefore also recorded, and the loop raises it again at its next step if nothing else did.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from sweep.launcher.sigterm import Terminated

WATCHED = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """The SIGINT or SIGTERM the launcher got and has not yet acted on."""

    def __init__(self) -> None:
        self.pending: int | None = None

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Record SIGINT and SIGTERM, then let their handlers act as before (main thread only; a signal
        whose handler is not Python's, such as a SLURM-job launcher's SIGTERM, is left alone)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in WATCHED}
        for sig, handler in previous.items():
            if callable(handler):
                signal.signal(sig, self._recorder(handler))
        try:
            yield
        finally:
            for sig, handler in previous.items():
                if callable(handler):
                    signal.signal(sig, handler)

    def _recorder(
        self, handler: Callable[[int, FrameType | None], Any]
    ) -> Callable[[int, FrameType | None], Any]:
        def record(signum: int, frame: FrameType | None) -> Any:
            self.pending = signum
            return handler(signum, frame)

        return record

    def check(self) -> None:
        """Raise what a recorded signal's handler raised, when it was swallowed on its way here."""
        signum, self.pending = self.pending, None
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if signum == signal.SIGTERM:
            raise Terminated()
