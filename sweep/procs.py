"""What the process table says of a pid: whether it runs, and what it was started as; and stopping a
set of processes (SIGTERM, a grace, SIGKILL).

Used by owners (is a launcher alive?), the local executor (is a job's controller alive?), cancel and
status. A pid the kernel has reused for another program must not pass for ours, so callers name what
the process's command line must mention.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from sweep.polling import wait_until

KILL_WAIT_S = 5.0  # after SIGKILL: how long the kernel may take to tear the processes down


def _state(pid: int) -> str | None:
    """The one-letter state of `/proc/PID/stat` (R, S, Z, ...); None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (`/proc/PID/stat` field 22); None when gone.

    A pid and its start time name one process for the life of the machine: a pid the kernel reused
    for a later process has another start time.
    """
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def cmdline(pid: int) -> list[bytes]:
    """The process's arguments; empty when it is gone (or not ours to read)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (not a zombie); without /proc, whether it can be signalled."""
    if pid <= 0:
        return False
    if Path("/proc/self").is_dir():
        state = _state(pid)
        return state is not None and state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runs(pid: int, mentioning: bytes) -> bool:
    """Whether `pid` is alive and some argument of its command line contains `mentioning`."""
    return alive(pid) and any(mentioning in arg for arg in cmdline(pid))


def runs_with_arg(pid: int, arg: bytes) -> bool:
    """Whether `pid` is alive with `arg` as one whole argument of its command line."""
    return alive(pid) and arg in cmdline(pid)


def environ(pid: int, name: str) -> str | None:
    """The value of environment variable `name` in process `pid`; None when unset or unreadable."""
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    prefix = name.encode() + b"="
    for entry in entries:
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def terminate(members: Callable[[], list[int]], *, grace_s: float) -> bool:
    """SIGTERM every process `members()` lists, SIGKILL those still listed after `grace_s`.

    `members` is asked again at each step, so that children started meanwhile are stopped too, and a
    pid is only signalled while it still passes the caller's test (a reused pid does not). Returns
    whether none is left.
    """
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILL_WAIT_S)):
        pids = members()
        if not pids:
            return True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        if wait_until(lambda: not members(), wait_s):
            return True
    return not members()
