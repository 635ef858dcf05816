"""What the other commands read of a study's detached launcher (`sweep launch --detach`): whether it
still runs, one line on where, and how to stop it. `sweep status`, `sweep logs` and `sweep cancel` use
it; `sweep.launcher.detach` starts such a launcher.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket

from sweep.errors import Printer
from sweep.polling import wait_until
from sweep.store import owners
from sweep.store.records import DetachedLauncher

DETACHED_ENV = "SWEEP_DETACHED"  # in a detached launcher's environment: local | slurm

STOP_WAIT_S = 15.0  # how long a stopped launcher gets to exit before SIGKILL


def alive(record: DetachedLauncher) -> bool | None:
    """Whether the detached launcher still runs (or may run again: a requeued job); None: cannot tell
    (a process on another host, SLURM not answering)."""
    if record.kind == "slurm":
        from sweep.executors import slurm_queries

        if record.job_id is None:
            return False
        try:
            return slurm_queries.job_states([record.job_id])[record.job_id].live
        except slurm_queries.SlurmUnavailable:
            return None
    if record.host != socket.gethostname():
        return None
    return record.pid is not None and owners.alive(
        owners.Owner(record.host, record.pid, record.started), None
    )


def describe(record: DetachedLauncher) -> str:
    """One line: where the detached launcher runs, whether it still does, since when."""
    since = time_text(record.since)
    if record.kind == "slurm":
        from sweep.executors import slurm_queries

        try:
            state = slurm_queries.job_states([record.job_id or ""])[record.job_id or ""].state
        except slurm_queries.SlurmUnavailable:
            state = "unknown: SLURM does not answer"
        node = f" on {record.host}" if record.host else ""
        return f"SLURM job {record.job_id} {state}{node}, started {since}"
    live = alive(record)
    said = "alive" if live else ("on another host" if live is None else "ended")
    return f"process {record.pid} on {record.host} ({said}), started {since}"


def stop(record: DetachedLauncher, out: Printer = print) -> None:
    """Stop the detached launcher (before its trials are cancelled: it would start them again)."""
    if record.kind == "slurm":
        from sweep.executors import slurm_queries

        if record.job_id is None or not alive(record):
            return
        slurm_queries.scancel([record.job_id])
        wait_until(lambda: not alive(record), STOP_WAIT_S * 4, every_s=slurm_queries.WAIT_QUERY_S)
        out(f"detached launcher (SLURM job {record.job_id}) stopped")
        return
    live = alive(record)
    if live is None:  # a process on another host: no signal reaches it from here
        out(f"detached launcher (process {record.pid} on {record.host}) runs on another host: stop it there")
        return
    if not live or record.pid is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, sig)
        if wait_until(lambda: not alive(record), STOP_WAIT_S, every_s=0.1):
            break
    out(f"detached launcher (process {record.pid} on {record.host}) stopped")


def time_text(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")
