"""Waiting on what lies outside the process (a job, a file, a database, SLURM), in the three shapes sweep
uses: until a condition holds with a deadline (`wait_until`), a value read again at most every N seconds
(`Throttle`), and a thing followed until it ends (`follow`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

WAIT_STEP_S = 0.05  # how often `wait_until` asks by default: quick enough for a process's exit


def wait_until(condition: Callable[[], bool], seconds: float, *, every_s: float = WAIT_STEP_S) -> bool:
    """Ask `condition()` every `every_s` seconds until it holds, for at most `seconds` (it is asked once
    more at the deadline); whether it held."""
    end = time.monotonic() + seconds
    while True:
        if condition():
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(every_s, left))


class Throttle:
    """When a value read from outside is due to be read again: never read yet, `every_s` seconds since
    the last read, or what it was read for (its `key`) changed and `min_s` seconds have passed."""

    def __init__(self, every_s: float, *, min_s: float = 0.0) -> None:
        self.every_s = every_s
        self.min_s = min_s
        self._at: float | None = None
        self._key: Hashable = None

    def take(self, key: Hashable = None, *, force: bool = False) -> bool:
        """Whether to read now; when so, the read counts as done now (for `key`)."""
        now = time.monotonic()
        if force or self._at is None:
            due = True
        else:
            since = now - self._at
            due = since >= self.every_s or (key != self._key and since >= self.min_s)
        if due:
            self._at, self._key = now, key
        return due


def follow(step: Callable[[], bool], *, every_s: float) -> None:
    """Call `step()` every `every_s` seconds until it returns True: the thing it follows has ended (a
    step asks whether it ended before it reads, so its last read holds the thing's last output)."""
    while not step():
        time.sleep(every_s)
