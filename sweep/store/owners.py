"""Which launcher watches a RUNNING trial, whether it is still alive, and when another may take over.

A launcher is named `host:pid/start` (stored as the trial's `launcher` and in its claim, see
`sweep.store.claims`): `start` is when the process started, so a dead launcher whose pid the kernel gave to
another process is still seen as dead. It stamps its claims every HEARTBEAT_SECONDS. Another launcher
takes a trial over when its owner is dead: on the same host the process table says; on another host,
a heartbeat older than HEARTBEAT_STALE_S says (hosts sharing a study need roughly synchronised clocks,
as any NTP-run cluster has).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from sweep import procs

HEARTBEAT_SECONDS = 30.0
HEARTBEAT_STALE_S = 4 * HEARTBEAT_SECONDS


@dataclass(frozen=True)
class Owner:
    """A launcher's identity: its host, its pid there (None when the id is not ours) and the process's
    start time (None in ids stored by older versions: then the pid alone is checked)."""

    host: str
    pid: int | None
    started: int | None = None

    @classmethod
    def parse(cls, text: str) -> Owner:
        host, _, rest = text.rpartition(":")
        pid, _, started = rest.partition("/")
        return cls(
            host=host,
            pid=int(pid) if pid.isdigit() else None,
            started=int(started) if started.isdigit() else None,
        )

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}" + (f"/{self.started}" if self.started is not None else "")

    @property
    def here(self) -> bool:
        """Whether the launcher runs on this host."""
        return self.host == socket.gethostname()

    @property
    def is_me(self) -> bool:
        return self.here and self.pid == os.getpid()


def me() -> Owner:
    """This process as a launcher (read each time: a forked or detached launcher has its own pid)."""
    return Owner(socket.gethostname(), os.getpid(), procs.start_ticks(os.getpid()))


def launcher_id() -> str:
    """This launcher's id as stored in a trial's `launcher`."""
    return str(me())


def alive(owner: Owner, heartbeat: float | None, *, now: float | None = None) -> bool:
    """Whether `owner`, which last stamped its trial at `heartbeat`, is another live launcher.

    This process is never "another". On this host the process table says; elsewhere a fresh
    heartbeat does.
    """
    if not owner.here:
        now = time.time() if now is None else now
        return heartbeat is not None and now - heartbeat < HEARTBEAT_STALE_S
    if owner.pid is None or owner.is_me:
        return False
    if not procs.alive(owner.pid):
        return False
    # The pid may now be another process's (pid wrap-around, a restarted container): the start time
    # tells; an id stored without one (an older sweep) must at least name a sweep process.
    if owner.started is None:
        return procs.runs(owner.pid, b"sweep")
    return procs.start_ticks(owner.pid) == owner.started


def may_take_over(owner: str | None, heartbeat: float | None) -> bool:
    """The take-over rule: a RUNNING trial with no owner, or whose owner is not alive, may be taken."""
    return owner is None or not alive(Owner.parse(owner), heartbeat)
