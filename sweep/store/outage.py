"""A study database that stops answering for a while is waited for, not a crash of the launcher.

A PostgreSQL restart or failover, a network blip, SQLite locked by another process past its busy
timeout: every storage call of a launcher (Optuna's and sweep's own tables) that fails because the
database cannot be reached is tried again with back-off (1 s doubling to 30 s) for as long as
`[waits] storage_outage_min` allows. One line when the outage starts, one when it ends; the
launcher's jobs run on meanwhile, and their epochs are reported once the database answers.

A call that failed may have committed before its answer was lost. Repeating it is harmless for every
write the launcher makes (a user attribute, a param or an intermediate value is the same row written
again) except two, which are checked before they are repeated:

- a trial's creation carries a nonce (a system attribute): before creating again, the trial with that
  nonce is looked for, and returned when it is there (`sweep._compat.riding_storage`, which makes every
  Optuna storage call through the outage);
- a trial's end (`tell`): repeated onto a trial that is already in that state, it counts as done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sweep.errors import Printer, SweepError, causes

T = TypeVar("T")
FIRST_WAIT_S, LAST_WAIT_S = 1.0, 30.0
# What a database that cannot be reached says, through psycopg, SQLite or SQLAlchemy (lower case).
UNREACHABLE = (
    "could not connect",
    "connection refused",
    "server closed the connection",
    "terminating connection",
    "connection is closed",
    "connection already closed",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "database is locked",
    "ssl connection has been closed",
    "connection reset",
    "consuming input failed",
    "no connection to the server",
    "connection timed out",
    "server conn crashed",
)


def unreachable(err: BaseException) -> str | None:
    """The first line of what `err` (or an exception it came from) says when it means the database
    could not be reached; None for any other error (a bad query, a full disk: not waited for)."""
    for current in causes(err):
        text = str(getattr(current, "orig", None) or current).strip()
        first = text.splitlines()[0] if text else type(current).__name__
        if getattr(current, "connection_invalidated", False) or any(w in text.lower() for w in UNREACHABLE):
            return first
    return None


class StorageOutage:
    """Runs storage calls, waiting out a database that cannot be reached (see the module docstring)."""

    def __init__(
        self,
        allowed_s: float,
        out: Printer,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed_s = allowed_s
        self.out = out
        self.sleep = sleep
        self.clock = clock
        self.outages = 0  # how many outages were ridden out (for tests and benchmarks)

    def call(self, action: Callable[[], T], *, check: Callable[[], T | None] | None = None) -> T:
        """`action()`; while it fails because the database cannot be reached, wait and do it again.
        `check()`, before each repeat: what the failed try committed (returned instead), or None.

        Raises:
            SweepError: the database stayed away past `allowed_s` (one line naming the last error).
        """
        started: float | None = None
        wait = FIRST_WAIT_S
        while True:
            try:
                if started is not None and check is not None:
                    done = check()
                    if done is not None:
                        return self._back(started, done)
                result = action()
            except Exception as err:  # Optuna wraps a failed commit in its own type: its cause says
                why = unreachable(err)
                if why is None:
                    raise
                now = self.clock()
                if started is None:
                    started = now
                    self.outages += 1
                    minutes = self.allowed_s / 60
                    self.out(f"storage: the database does not answer ({why}); waiting up to {minutes:g} min")
                elif now - started >= self.allowed_s:
                    raise SweepError(
                        f"storage: the database did not answer for {now - started:.0f} s ({why}); "
                        "raise [waits] storage_outage_min to wait longer. `sweep launch` again "
                        "re-attaches the running trials"
                    ) from None
                self.sleep(wait)
                wait = min(2 * wait, LAST_WAIT_S)
                continue
            return result if started is None else self._back(started, result)

    def _back(self, started: float, result: T) -> T:
        self.out(f"storage: the database answers again after {self.clock() - started:.0f} s")
        return result
