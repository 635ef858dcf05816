"""Trials whose job a submission limit refused (QOSMaxSubmitJobPerUserLimit, ...): held, not failed.

A held trial stays RUNNING in the study, claimed by its launcher, with no job yet; its refusal is not
counted as a submission. It is submitted again once one of the launcher's jobs has ended (a slot under
the limit is then likely free), or every RETRY_S seconds whatever happened (other users' jobs count
against a limit too). While any trial is held the launcher asks for no new one: it would be refused
too.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import optuna

from sweep.errors import Printer
from sweep.store import records

RETRY_S = 60.0  # a held trial is tried again at least this often


@dataclass
class HeldTrial:
    trial: optuna.Trial
    reported: int  # its epochs already reported (a resumed trial's)


class Held:
    """The launcher's held trials, oldest first, and when to try them again."""

    def __init__(self, study: str, out: Printer) -> None:
        self.study = study
        self.out = out
        self.trials: deque[HeldTrial] = deque()
        self._running = 0  # the launcher's running jobs when the last refusal came
        self._tried = 0.0  # monotonic time of the last refusal

    def __bool__(self) -> bool:
        return bool(self.trials)

    def numbers(self) -> set[int]:
        """The held trials' numbers: RUNNING in the study, watched by this launcher, with no job."""
        return {item.trial.number for item in self.trials}

    def hold(self, trial: optuna.Trial, reported: int, limit: str, running: int) -> None:
        """Hold `trial`, refused for `limit` while `running` of the launcher's jobs ran."""
        if not self.trials:
            self.out(
                f"{self.study}: waiting: submission limit ({limit}); trial {trial.number} held until one "
                f"of the study's {running} running jobs ends"
            )
        self.trials.appendleft(HeldTrial(trial, reported))  # tried first again
        records.write(trial, waiting=f"submission limit ({limit})")  # `sweep status` shows it
        self._running, self._tried = running, time.monotonic()

    def due(self, running: int) -> HeldTrial | None:
        """The held trial to submit now, taken off the list; None when none is due."""
        if not self.trials:
            return None
        if running < self._running or time.monotonic() - self._tried >= RETRY_S:
            self._running = running  # a refusal of this try sets them again
            return self.trials.popleft()
        return None

    def released(self, trial: optuna.Trial) -> None:
        """Say that a held trial's job was taken at last; the next held one is then tried at once."""
        self._tried = -math.inf  # the next held trial is due at once
        records.write(trial, waiting="")
        self.out(f"trial {trial.number} submitted after the submission limit let it")
