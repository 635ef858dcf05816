"""Trials whose launcher is gone, and trials another launcher took: the launcher's view of its peers.

A launcher takes over a RUNNING trial when its claim's launcher is gone (`sweep.store.owners`: dead on this
host, silent for minutes elsewhere, or an earlier run of this very launcher); the claim changes hands
by compare-and-set (`sweep.store.claims`), so of several launchers trying at once one wins. A launcher that
was stopped for minutes may find that its own trials changed hands meanwhile: it leaves them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep._compat import trial_id, trial_of
from sweep.errors import Printer
from sweep.executors import Executor
from sweep.store import owners, records
from sweep.store.claims import Claims, Holder
from sweep.store.records import TrialRecord


@dataclass(frozen=True)
class Taken:
    """A trial now this launcher's: its job to re-attach (None: submit it again) and where it stood."""

    trial: optuna.Trial
    job_id: str | None
    kind: str  # the executor that ran its job
    run_dir: Path | None
    repeat: int
    reported: int  # the last epoch reported to it


class TakeOver:
    """Decides which RUNNING trials of other launchers this one takes, and which of its own it lost."""

    def __init__(
        self,
        study: optuna.Study,
        claims: Claims,
        executor: Executor,
        out: Printer,
        predecessors: frozenset[str] = frozenset(),
    ) -> None:
        self.study = study
        self.claims = claims
        self.executor = executor
        self.out = out
        self.predecessors = predecessors  # this launcher's ids before a restart: their claims are ours
        self.announced: set[int] = set()  # trials named once as watched by a live launcher
        self.said_waiting = False

    def gone(self, holder: Holder) -> bool:
        """Whether the launcher holding a claim is gone, so the run may change hands."""
        return holder.launcher in self.predecessors or owners.may_take_over(holder.launcher, holder.stamped)

    def take(self, frozen: FrozenTrial) -> Taken | None:
        """Take the RUNNING trial when its launcher is gone; None when it stays another's."""
        record = TrialRecord.of(frozen)
        if record.config is None:  # not a sweep trial: launches refuse such studies; leave it be
            return None
        held = self.claims.holder(record.config, record.repeat)
        if held is None:  # a trial from before claims: its record says who watched it and when
            started = frozen.datetime_start.timestamp() if frozen.datetime_start is not None else None
            holder = Holder(
                record.config, record.repeat, None, record.launcher or "", record.heartbeat or started or 0
            )
        else:
            holder = held
        if holder.launcher and holder.launcher != self.claims.launcher and not self.gone(holder):
            if frozen.number not in self.announced:
                self.announced.add(frozen.number)
                self.out(
                    f"trial {frozen.number} is watched by the running launcher {holder.launcher}; leaving it"
                )
            return None
        if not self.claims.take_over(record.config, record.repeat, trial_id(frozen), may_take=self.gone):
            return None  # another launcher took it over first
        trial = trial_of(self.study, frozen)
        records.write(trial, launcher=self.claims.launcher)
        job_id = record.job_id
        if record.run_dir is not None:  # a job whose launcher died before storing its id
            orphan = self.executor.orphan(record.run_dir, after=job_id)
            if orphan is not None:
                job_id = orphan
                records.write(trial, job_id=orphan)
        return Taken(
            trial=trial,
            job_id=job_id if record.run_dir is not None else None,
            kind=record.executor or self.executor.name,
            run_dir=record.run_dir,
            repeat=record.repeat,
            reported=max(frozen.intermediate_values, default=0),
        )

    def lost(self, watched: Mapping[int, tuple[int, int]]) -> list[int]:
        """Of the trials this launcher watches ({number: (config, repeat)}), those another launcher took
        over while this one was silent (stopped, cut off); each is said once."""
        held = self.claims.held()
        gone = [number for number, key in watched.items() if key not in held]
        for number in gone:
            self.announced.add(number)
            holder = self.claims.holder(*watched[number])
            by = f"launcher {holder.launcher}" if holder is not None else "another launcher"
            self.out(f"trial {number} is now watched by {by} (this launcher was silent too long); left")
        return gone

    def unwatched(self, watched: Collection[int]) -> list[FrozenTrial]:
        """The study's RUNNING trials this launcher does not watch."""
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [frozen for frozen in running if frozen.number not in watched]

    def say_waiting(self, study: str, count: int) -> None:
        if not self.said_waiting:
            self.said_waiting = True
            self.out(
                f"{study}: nothing left to start; waiting for {count} trials other launchers watch "
                "(this launcher takes over any whose launcher stops)"
            )
