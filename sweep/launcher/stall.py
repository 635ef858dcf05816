"""A trial whose job stopped logging epochs while it still runs: stalled (a program that hangs after its
last epoch, a deadlocked data loader, a node SLURM has not yet found dead).

The launcher times the epochs it reads: a trial is stalled when no new epoch came for STALL_FACTOR times
the median time between its epochs, and at least MIN_STALL_S (or, after its first epoch, for `[study]
stall_after_min`). It is stored with the trial (`sweep status` shows it). `[study] stall_action`:
"warn" (the default) says so once in a launcher line, and again, clearing it, if epochs come back;
nothing is stopped. "requeue" and "fail" leave it to the launcher, which stops the job and submits it
again (resuming from its checkpoint) or fails the trial.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import optuna

from sweep.errors import Printer
from sweep.launcher.intervals import DEFAULT_INTERVALS
from sweep.store import records
from sweep.study.spec import StudySpec

STALL_FACTOR = 3.0  # no new epoch for this many median epoch times: stalled
MIN_STALL_S = DEFAULT_INTERVALS.stall_min_s  # and for at least this long (a short epoch's jitter is no stall)


@dataclass
class EpochClock:
    """When a watched trial's epochs came, as the launcher read them."""

    last: float = field(default_factory=time.monotonic)  # the last new epoch read (or the submission)
    gaps: list[float] = field(default_factory=list)  # seconds between epochs (from the second one on)
    epochs: int = 0
    stalled: bool = False  # said and stored

    def idle_limit(self, after_s: float | None = None, min_s: float = MIN_STALL_S) -> float | None:
        """Seconds without a new epoch after which the trial is stalled: `after_s` once an epoch came,
        else the median rule; None before the rule can apply."""
        if after_s is not None:
            return after_s if self.epochs else None
        if not self.gaps:
            return None
        return max(STALL_FACTOR * statistics.median(self.gaps), min_s)


@dataclass(frozen=True)
class StallRule:
    """A study's [study] stall_after_min (in seconds) and stall_action."""

    after_s: float | None = None
    action: str = "warn"
    min_s: float = MIN_STALL_S  # the median rule's shortest stall (`Intervals.stall_min_s`)

    @classmethod
    def of(cls, spec: StudySpec, min_s: float = MIN_STALL_S) -> StallRule:
        minutes = spec.stall_after_min
        return cls(None if minutes is None else minutes * 60, spec.stall_action, min_s)


def watch_epochs(
    clock: EpochClock, trial: optuna.Trial, new: int, done: bool, out: Printer, rule: StallRule = StallRule()
) -> str | None:
    """Count `new` epochs just read for `trial`; store a stall, or its end. With the rule's action "warn"
    a stall is said here; otherwise what it is comes back (the launcher acts on it and says so)."""
    after_s = rule.after_s
    now = time.monotonic()
    if new:
        if clock.epochs:
            clock.gaps += [(now - clock.last) / new] * new
        clock.epochs, clock.last = clock.epochs + new, now
        if clock.stalled:
            clock.stalled = False
            records.write(trial, stalled="")
            out(f"trial {trial.number} logs epochs again")
        return None
    limit = clock.idle_limit(after_s, rule.min_s)
    if done or clock.stalled or limit is None or now - clock.last < limit:
        return None
    clock.stalled = True
    why = f"[study] stall_after_min = {after_s / 60:g}" if after_s is not None else None
    if why is None:
        why = f"{STALL_FACTOR:g}x its median {_duration(statistics.median(clock.gaps))} between epochs"
    said = f"no new epoch for {_duration(now - clock.last)} after epoch {clock.epochs} ({why})"
    records.write(trial, stalled=said)
    if rule.action != "warn":
        return said
    out(f"trial {trial.number} stalled: {said}; its job still runs (`sweep cancel` or scancel stops it)")
    return None


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
