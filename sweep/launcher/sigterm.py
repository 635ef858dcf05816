"""SIGTERM of an attached `sweep launch` (how `sweep cancel` stops a study's launcher on this host): the
launcher says so in one line and exits 143, as a shell reports SIGTERM, instead of vanishing silently.

Not in a detached launcher that is a SLURM job: submitit handles that job's signals (requeue at a time
limit) itself.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from sweep.detached import DETACHED_ENV

EXIT_STATUS = 143  # 128 + SIGTERM


class Terminated(Exception):
    """The launcher got SIGTERM."""


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated (in the main thread, outside a SLURM-job launcher)."""
    if threading.current_thread() is not threading.main_thread() or os.environ.get(DETACHED_ENV) == "slurm":
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stopped_line(study: str) -> str:
    """What a launcher stopped by SIGTERM prints."""
    return (
        f"{study}: launcher stopped by sweep cancel (or another SIGTERM); its trials' jobs are left to the "
        "cancel (a new `sweep launch` re-attaches any still running)"
    )
