"""Telling the study a trial's end: once (a trial finished elsewhere is said and left), and a failure with
its reason kept and counted (too many in a row stop the launch)."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from sweep._compat import finished_already
from sweep.errors import Printer
from sweep.launcher.failures import Failures
from sweep.launcher.source import TrialSource
from sweep.store import records


class Endings:
    """Tells trials' ends to the study for a launcher."""

    def __init__(
        self, study: optuna.Study, source: TrialSource, failures: Failures, study_name: str, out: Printer
    ) -> None:
        self.study = study
        self.source = source  # told of each end: the search may be done, its confirmation trials due
        self.failures = failures
        self.study_name = study_name
        self.out = out

    def tell(
        self, trial: optuna.Trial, value: float | None = None, *, state: TrialState | None = None
    ) -> bool:
        """Tell the trial's end; False when it was finished already (by `sweep cancel`, or another
        launcher that took it over while this one was stopped), which is said and otherwise left be."""
        try:
            self.study.tell(trial, value, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
        except ValueError as err:
            if not finished_already(err):
                raise
        else:
            self.source.ended()  # the search may be done: its confirmation trials are then listed
            return True
        self.out(f"trial {trial.number} was finished elsewhere (sweep cancel, another launcher); leaving it")
        return False

    def fail(self, trial: optuna.Trial, reason: str, *, count: bool = True) -> None:
        """Tell the trial FAIL with `reason` kept; `count`: a failure of its job (not a stop by sweep)."""
        number = trial.number
        records.write(trial, traceback=reason)
        if not self.tell(trial, state=TrialState.FAIL):
            return
        last = records.failure_line(reason)
        shows = f"sweep status --study {self.study_name} --trial {number}"
        self.out(f"trial {number} failed: {last} (full text: {shows})")
        if count:
            self.failures.failed(last)  # too many in a row stop the launch
