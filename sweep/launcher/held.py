"""Trials whose job a submission limit refused (QOSMaxSubmitJobPerUserLimit, ...): held, not failed.

A held trial stays RUNNING in the study, claimed by its launcher, with no job yet; its refusal is not
counted as a submission. It is submitted again once one of the launcher's jobs has ended (a slot under
the limit is then likely free), or every `Intervals.held_retry_s` seconds whatever happened (other
users' jobs count against a limit too). While any trial is held the launcher asks for no new one: it
would be refused too.

A submission the scheduler did not answer (slurmctld down or busy: `SubmitHeld` with `retry_s`) is held
the same way and tried again when the submitter's back-off says (2 s doubling to 60 s): the launcher's
loop never waits inside sbatch, so during an outage it still records trials' ends from their run dirs,
prunes, and checks stalls. The submitter counts the outage across tries and ends the launch past
`[waits] scheduler_outage_min`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import optuna

from sweep.errors import Printer
from sweep.executors.base import SubmitHeld
from sweep.launcher.intervals import DEFAULT_INTERVALS
from sweep.store import records


@dataclass
class HeldTrial:
    trial: optuna.Trial
    reported: int  # its epochs already reported (a resumed trial's)


class Held:
    """The launcher's held trials, oldest first, and when to try them again."""

    def __init__(self, study: str, out: Printer, *, retry_s: float = DEFAULT_INTERVALS.held_retry_s) -> None:
        self.study = study
        self.out = out
        self.retry_s = retry_s  # a held trial is tried again at least this often
        self.trials: deque[HeldTrial] = deque()
        self._running = 0  # the launcher's running jobs when the last refusal came
        self._tried = 0.0  # monotonic time of the last refusal
        self._retry_at: float | None = None  # an outage's: when to try again (monotonic); None: a limit

    def __bool__(self) -> bool:
        return bool(self.trials)

    def numbers(self) -> set[int]:
        """The held trials' numbers: RUNNING in the study, watched by this launcher, with no job."""
        return {item.trial.number for item in self.trials}

    def hold(self, trial: optuna.Trial, reported: int, refusal: SubmitHeld, running: int) -> None:
        """Hold `trial`, refused for `refusal` (a limit, or an outage: `retry_s`) while `running` of the
        launcher's jobs ran."""
        limit, outage = str(refusal), refusal.retry_s is not None
        if not self.trials and not outage:  # an outage's line is the submitter's
            self.out(
                f"{self.study}: waiting: submission limit ({limit}); trial {trial.number} held until one "
                f"of the study's {running} running jobs ends"
            )
        self.trials.appendleft(HeldTrial(trial, reported))  # tried first again
        said = f"scheduler outage, sbatch tried again ({limit})" if outage else f"submission limit ({limit})"
        records.write(trial, waiting=said)  # `sweep status` shows it
        self._running, self._tried = running, time.monotonic()
        self._retry_at = self._tried + refusal.retry_s if refusal.retry_s is not None else None

    def due(self, running: int) -> HeldTrial | None:
        """The held trial to submit now, taken off the list; None when none is due."""
        if not self.trials:
            return None
        now = time.monotonic()
        if self._retry_at is not None:  # an outage: on the back-off's schedule only
            return self.trials.popleft() if now >= self._retry_at else None
        if running < self._running or now - self._tried >= self.retry_s:
            self._running = running  # a refusal of this try sets them again
            return self.trials.popleft()
        return None

    def waiting_s(self) -> float | None:
        """Seconds until a held trial is due for an outage's next try; None when not held for one."""
        if not self.trials or self._retry_at is None:
            return None
        return max(0.0, self._retry_at - time.monotonic())

    def released(self, trial: optuna.Trial) -> None:
        """Say that a held trial's job was taken at last; the next held one is then tried at once."""
        self._tried = -math.inf  # the next held trial is due at once
        records.write(trial, waiting="")
        if self._retry_at is None:  # an outage's end is the submitter's line
            self.out(f"trial {trial.number} submitted after the submission limit let it")
        else:
            self._retry_at = -math.inf
