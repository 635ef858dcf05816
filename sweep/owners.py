"""Which launcher watches a RUNNING trial, whether it is still alive, and when another may take over.

A launcher is named `host:pid` (stored as the trial's `launcher`). It stamps its running trials'
`heartbeat` every HEARTBEAT_SECONDS. Another launcher takes a trial over when its owner is dead:
on the same host the process table says; on another host, a heartbeat older than HEARTBEAT_STALE_S
says (hosts sharing a study need roughly synchronised clocks, as any NTP-run cluster has).
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
    """A launcher's identity: the host it runs on and its pid there (None when the id is not ours)."""

    host: str
    pid: int | None

    @classmethod
    def parse(cls, text: str) -> Owner:
        host, _, pid = text.rpartition(":")
        return cls(host=host, pid=int(pid) if pid.isdigit() else None)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"

    @property
    def here(self) -> bool:
        """Whether the launcher runs on this host."""
        return self.host == socket.gethostname()

    @property
    def is_me(self) -> bool:
        return self.here and self.pid == os.getpid()


def me() -> Owner:
    """This process as a launcher (read each time: a forked or detached launcher has its own pid)."""
    return Owner(socket.gethostname(), os.getpid())


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
    return procs.alive(owner.pid)


def may_take_over(owner: str | None, heartbeat: float | None) -> bool:
    """The take-over rule: a RUNNING trial with no owner, or whose owner is not alive, may be taken."""
    return owner is None or not alive(Owner.parse(owner), heartbeat)
