"""A trial whose job stopped logging epochs while it still runs: stalled (a program that hangs after its
last epoch, a deadlocked data loader, a node SLURM has not yet found dead).

The launcher times the epochs it reads: a trial is stalled when no new epoch came for STALL_FACTOR times
the median time between its epochs, and at least MIN_STALL_S. It says so once in a launcher line and
stores it with the trial (`sweep status` shows it), and says so again, clearing it, if epochs come back.
Nothing is stopped: what to do with a stalled job is the user's call (`sweep cancel`, `scancel`).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import optuna

from sweep import records
from sweep.errors import Printer

STALL_FACTOR = 3.0  # no new epoch for this many median epoch times: stalled
MIN_STALL_S = 60.0  # and for at least this long (a short epoch's jitter is no stall)


@dataclass
class EpochClock:
    """When a watched trial's epochs came, as the launcher read them."""

    last: float = field(default_factory=time.monotonic)  # the last new epoch read (or the submission)
    gaps: list[float] = field(default_factory=list)  # seconds between epochs (from the second one on)
    epochs: int = 0
    stalled: bool = False  # said and stored

    def idle_limit(self) -> float | None:
        """Seconds without a new epoch after which the trial is stalled; None before two epochs."""
        if not self.gaps:
            return None
        return max(STALL_FACTOR * statistics.median(self.gaps), MIN_STALL_S)


def watch_epochs(clock: EpochClock, trial: optuna.Trial, new: int, done: bool, out: Printer) -> None:
    """Count `new` epochs just read for `trial`; say and store a stall, or its end."""
    now = time.monotonic()
    if new:
        if clock.epochs:
            clock.gaps += [(now - clock.last) / new] * new
        clock.epochs, clock.last = clock.epochs + new, now
        if clock.stalled:
            clock.stalled = False
            records.write(trial, stalled="")
            out(f"trial {trial.number} logs epochs again")
        return
    limit = clock.idle_limit()
    if done or clock.stalled or limit is None or now - clock.last < limit:
        return
    clock.stalled = True
    median = statistics.median(clock.gaps)
    said = (
        f"no new epoch for {_duration(now - clock.last)} after epoch {clock.epochs} "
        f"({STALL_FACTOR:g}x its median {_duration(median)} between epochs)"
    )
    records.write(trial, stalled=said)
    out(f"trial {trial.number} stalled: {said}; its job still runs (`sweep cancel` or scancel stops it)")


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
