"""A launch's GPU-hour budget ([study] budget_gpu_hours, `sweep launch --budget-gpu-hours`): the launcher
starts no new trial once the hours used plus the expected hours of the running trials reach it.

Hours used are `sweep.gpu_hours`' (sacct for SLURM jobs, the manifests' attempt times for local ones),
over the whole study, every launch and launcher included. A running trial is expected to cost what the
study's COMPLETE trials cost on average (nothing while none is complete), less what it used so far.
The budget counts GPU-hours only: a study whose trials ask for no GPU ([resources] gpus = 0) cannot
have one (`check_budget`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from sweep.errors import SweepError
from sweep.gpu_hours import HoursTally, TrialHours


@dataclass(frozen=True)
class Spent:
    """Where a study stands against its budget."""

    limit: float
    used: float
    expected: float  # what the running trials are expected to use beyond their hours so far

    @property
    def reached(self) -> bool:
        return self.used + self.expected >= self.limit

    @property
    def left(self) -> float:
        return max(0.0, self.limit - self.used)


def check_budget(budget: float | None, gpus: int, where: str) -> None:
    """Raise a SweepError for a budget that is not a number > 0, or one on a study that uses no GPU."""
    if budget is None:
        return
    if not budget > 0:
        raise SweepError(f"{where} is {budget}; give a number of GPU-hours > 0")
    if gpus == 0:
        raise SweepError(
            f"{where} is set but [resources] gpus is 0: its trials use no GPU-hours, so no budget would "
            "stop them; set gpus or drop the budget"
        )


def spent(hours: Iterable[TrialHours], limit: float) -> Spent:
    """The hours used by `hours`' trials and those their RUNNING ones are expected to add."""
    items = list(hours)
    complete = [item.used for item in items if item.state == TrialState.COMPLETE.name]
    typical = sum(complete) / len(complete) if complete else 0.0
    expected = sum(max(0.0, typical - item.used) for item in items if item.state == TrialState.RUNNING.name)
    return Spent(limit=limit, used=sum(item.used for item in items), expected=expected)


class Budget:
    """Whether a launcher may start another trial; says once, in one line, when it may not."""

    def __init__(self, limit: float, gpus: int, name: str, out: Callable[[str], None]) -> None:
        self.limit, self.gpus, self.name, self.out = limit, gpus, name, out
        # the hours are read again at once when a trial starts or ends (the budget's decisions come then:
        # one sacct per trial's start or end), else every REREAD_SECONDS
        self.tally = HoursTally(min_s=0.0)
        self.stopped = False

    def stops(self, study: optuna.Study) -> bool:
        """Whether the budget stops new trials now."""
        if self.stopped:
            return True
        where = spent(self.tally.hours(study.get_trials(deepcopy=False), self.gpus).trials, self.limit)
        if where.reached:
            self.stopped = True
            self.out(
                f"{self.name}: GPU-hour budget reached ({where.used:.3f} used + {where.expected:.3f} "
                f"expected for the running trials >= {self.limit:g}); starting no new trial, the running "
                "ones finish. "
                "`sweep launch --budget-gpu-hours MORE` continues the study"
            )
        return self.stopped
