"""What a study's trials cost in GPU-hours, attempt by attempt, and how much of it was wasted.

Where the time comes from:
    slurm   every attempt of every job the trial ran as (its stored job id and the SLURM job ids its
            run dir's manifest.json names), from `sacct -D`: ElapsedRaw seconds x the allocation's
            gres/gpu count. Requeued, preempted, failed and pruned attempts are all there. Until the
            trial has ended and sacct's records are final, the manifest's (or stored) times where
            they say more: slurmdbd lags behind the jobs.
    local   each attempt in the run dir's manifest.json: its end minus its start (a running one: until
    debug   now; one killed before it wrote its end: until its run dir's last write) x the study's GPUs
            per trial.

Wasted: all of a PRUNED or FAILed trial's hours (nothing of it is a result); for a trial that ran more
than once (requeued, preempted, resubmitted after its job was lost), the hours beyond the epochs its
metrics keep (their epoch_seconds x GPUs): the work the restarts lost and their start-up again (the
first start's set-up is counted in it, so this is an upper bound). Without epoch_seconds, all attempts
but the last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial, TrialState

from sweep.executors import slurm_queries
from sweep.polling import Throttle
from sweep.store.records import TrialRecord
from trainer.manifest import manifest_path, read_manifest
from trainer.metrics import read_epochs
from trainer.paths import RunPaths

if TYPE_CHECKING:
    import pandas as pd

WASTED_STATES = (TrialState.PRUNED, TrialState.FAIL)
# sacct states of an attempt still counting: a job's result is stored before its batch script ends
LIVE = frozenset({"RUNNING", "PENDING", "SUSPENDED", "COMPLETING", "CONFIGURING", "RESIZING"})
# How often a HoursTally (a budget's, the live view's) runs sacct again: every REREAD_SECONDS, and after a
# trial started or ended once MIN_REREAD_SECONDS passed; slurmdbd serves a whole cluster, and a wave of
# ending trials is one read, not one each.
REREAD_SECONDS = 30.0
MIN_REREAD_SECONDS = 10.0


@dataclass(frozen=True)
class TrialHours:
    """One trial's GPU-hours: used over all its attempts, and the part of them wasted."""

    number: int
    state: str
    used: float
    wasted: float
    attempts: int
    # sacct | manifest | stored (the trial's stored times) | none (no attempt known: not started, or a
    # program writing no manifest)
    source: str
    ended: bool = True  # no attempt runs or waits to (its hours are final)

    def to_dict(self) -> dict[str, object]:
        return {
            "trial": self.number,
            "state": self.state,
            "used": self.used,
            "wasted": self.wasted,
            "attempts": self.attempts,
            "source": self.source,
            "ended": self.ended,
        }


@dataclass(frozen=True)
class StudyHours:
    """A study's GPU-hours, per trial and in all."""

    trials: tuple[TrialHours, ...]
    error: str | None = None  # why some hours are missing (sacct did not answer)

    @property
    def used(self) -> float:
        return sum(item.used for item in self.trials)

    @property
    def wasted(self) -> float:
        return sum(item.wasted for item in self.trials)

    def of(self, number: int) -> TrialHours | None:
        return next((item for item in self.trials if item.number == number), None)

    def line(self) -> str:
        """`GPU-hours: 1.23 used, 0.40 of them wasted (32%: pruned, failed, lost to requeues)`."""
        share = f"{100 * self.wasted / self.used:.0f}%: " if self.used > 0 else ""
        line = f"GPU-hours: {self.used:.3f} used, {self.wasted:.3f} of them wasted ({share}pruned, failed, "
        line += "lost to requeues)"
        return line + (f"; {self.error}" if self.error else "")


@dataclass(frozen=True)
class TrialFacts:
    """What the accounting needs of a trial: from a FrozenTrial, or from the report's own fast read
    (which builds no FrozenTrial: `get_trials` takes seconds on a large study)."""

    number: int
    state: TrialState
    executor: str | None
    job_id: str | None
    run_dir: Path | None
    start: float | None  # Unix times of the trial's stored start and end
    complete: float | None

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialFacts:
        record = TrialRecord.of(trial)
        start, complete = trial.datetime_start, trial.datetime_complete
        return cls(
            number=trial.number,
            state=trial.state,
            executor=record.executor,
            job_id=record.job_id,
            run_dir=record.run_dir,
            start=None if start is None else start.timestamp(),
            complete=None if complete is None else complete.timestamp(),
        )


def facts_of_frame(trials: pd.DataFrame) -> list[TrialFacts]:
    """What the GPU-hours accounting needs of each trial, from the stored frame (no FrozenTrials)."""
    columns = ["number", "state", "executor", "job_id", "run_dir", "start", "complete"]
    return [
        TrialFacts(
            number=int(number),
            state=TrialState[state],
            executor=executor if isinstance(executor, str) else None,  # missing ones may read as NaN
            job_id=job_id if isinstance(job_id, str) else None,
            run_dir=Path(run_dir) if isinstance(run_dir, str) else None,
            start=None if math.isnan(start) else float(start),
            complete=None if math.isnan(complete) else float(complete),
        )
        for number, state, executor, job_id, run_dir, start, complete in zip(
            *(trials[column].tolist() for column in columns), strict=True
        )
    ]


def study_hours(
    trials: Sequence[FrozenTrial | TrialFacts], gpus: int, *, now: float | None = None
) -> StudyHours:
    """The GPU-hours of `trials`; `gpus`: GPUs per trial of local and debug jobs (SLURM says its own)."""
    now = time.time() if now is None else now
    facts = [t if isinstance(t, TrialFacts) else TrialFacts.of(t) for t in trials]
    slurm_ids = {t.number: _slurm_ids(t) for t in facts if t.executor == "slurm"}
    error = None
    try:
        allocations = slurm_queries.sacct_allocations(i for ids in slurm_ids.values() for i in ids)
    except slurm_queries.SlurmUnavailable:  # slurmdbd down: say so once, with no raw error text of sacct's
        allocations, error = [], "sacct does not answer: the SLURM trials' hours come from their manifests"
    by_job: dict[str, list[slurm_queries.Allocation]] = {}
    for item in allocations:
        by_job.setdefault(item.job_id, []).append(item)
    out = []
    for trial in facts:
        if trial.number in slurm_ids:
            runs = [a for job in slurm_ids[trial.number] for a in by_job.get(job, [])]
            out.append(_slurm_hours(trial, runs, gpus, now))
        else:
            attempts = _local_attempts(trial, gpus, now)
            out.append(_hours(trial, attempts, "manifest", trial.state.is_finished()))
    return StudyHours(tuple(out), error)


class HoursTally:
    """A study's GPU-hours read again while it runs (the launcher's budget, the live view): a trial's
    hours are read once they are final, the others every `every_s` seconds, or sooner (after `min_s`)
    when a trial starts or ends (each read runs sacct and reads the run dirs' manifests)."""

    def __init__(self, *, every_s: float = REREAD_SECONDS, min_s: float = MIN_REREAD_SECONDS) -> None:
        self.final: dict[int, TrialHours] = {}  # a trial whose hours no longer change
        self.live: tuple[TrialHours, ...] = ()
        self.error: str | None = None
        self.due = Throttle(every_s, min_s=min_s)  # keyed by the unfinished trials and their states

    def hours(self, trials: Sequence[FrozenTrial], gpus: int) -> StudyHours:
        """The hours of `trials` (a study's, as `study_hours` counts them), read again when due."""
        rest = [t for t in trials if t.number not in self.final]
        if self.due.take(frozenset((t.number, t.state.name) for t in rest)):
            read = study_hours(rest, gpus)
            self.final.update((item.number, item) for item in read.trials if item.ended)
            self.live, self.error = tuple(item for item in read.trials if not item.ended), read.error
        items = sorted([*self.final.values(), *self.live], key=lambda item: item.number)
        return StudyHours(tuple(items), self.error)


def _slurm_hours(
    trial: TrialFacts, runs: list[slurm_queries.Allocation], gpus: int, now: float
) -> TrialHours:
    """sacct's hours once the trial has ended and every attempt's record is final. Until then, the more
    of sacct's and the trial's own record (its manifest's attempts, else its stored times): slurmdbd
    lags behind the jobs (a job that has run may still read PENDING with no GPUs, or not at all, for a
    few seconds) and sacct may not answer, and a budget must not take a job that ran for one that cost
    nothing."""
    attempts = [(float(a.elapsed_s), a.gpus) for a in runs]
    if runs and trial.state.is_finished() and all(a.state not in LIVE for a in runs):
        return _hours(trial, attempts, "sacct", True)
    own, source = _local_attempts(trial, gpus, now), "manifest"
    if not own and (trial.state.is_finished() or not runs):  # a job still queued has cost nothing
        own, source = _stored_attempt(trial, gpus, now), "stored"
    if runs and _gpu_seconds(attempts) >= _gpu_seconds(own):
        return _hours(trial, attempts, "sacct", False)
    return _hours(trial, own, source, False)


def _gpu_seconds(attempts: list[tuple[float, int]]) -> float:
    return sum(seconds * gpus for seconds, gpus in attempts)


def _slurm_ids(trial: TrialFacts) -> list[str]:
    """The SLURM jobs a trial ran as, oldest first: the manifest's attempts', then the stored one."""
    ids = [a.slurm_job_id for a in read_manifest(trial.run_dir)] if trial.run_dir else []
    return list(dict.fromkeys(i for i in [*ids, trial.job_id] if i and i.isdigit()))


def _local_attempts(trial: TrialFacts, gpus: int, now: float) -> list[tuple[float, int]]:
    """(seconds, GPUs) of each attempt in the run dir's manifest."""
    run_dir = trial.run_dir
    if run_dir is None:
        return []
    attempts = read_manifest(run_dir)
    out = []
    for index, attempt in enumerate(attempts):
        start = _epoch(attempt.started)
        end = _epoch(attempt.ended) if attempt.ended else None
        if end is None and index + 1 < len(attempts):  # killed: it ran until the next one started
            end = _epoch(attempts[index + 1].started)
        elif end is None:
            end = now if trial.state == TrialState.RUNNING else _last_write(run_dir, start)
        if start is not None and end is not None:
            out.append((max(0.0, end - start), gpus))
    return out


def _stored_attempt(trial: TrialFacts, gpus: int, now: float) -> list[tuple[float, int]]:
    """(seconds, GPUs) from the trial's stored start and end (now while it runs): more than its job
    used, as it counts the time queued too; only until the scheduler's own record is there."""
    if trial.start is None:
        return []
    end = trial.complete if trial.complete is not None else now
    return [(max(0.0, end - trial.start), gpus)]


def _hours(trial: TrialFacts, attempts: list[tuple[float, int]], source: str, ended: bool) -> TrialHours:
    used = _gpu_seconds(attempts) / 3600
    wasted = 0.0
    if trial.state in WASTED_STATES:
        wasted = used
    elif len(attempts) > 1:
        kept = _kept_seconds(trial)
        last_gpus = attempts[-1][1]
        lost = used - kept * last_gpus / 3600 if kept else sum(s * g for s, g in attempts[:-1]) / 3600
        wasted = min(used, max(0.0, lost))
    shown = source if attempts else "none"
    return TrialHours(trial.number, trial.state.name, used, wasted, len(attempts), shown, ended)


def _kept_seconds(trial: TrialFacts) -> float:
    """The epoch_seconds of the epochs the trial's metrics keep (0 when they say none)."""
    run_dir = trial.run_dir
    if run_dir is None:
        return 0.0
    return sum(float(e.get("epoch_seconds", 0.0)) for e in read_epochs(RunPaths(run_dir).metrics))


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _last_write(run_dir: Path, start: float | None) -> float | None:
    """When a killed attempt last wrote to its run dir: its end, as well as it is known."""
    times = [path.stat().st_mtime for path in _files(run_dir) if path.exists()]
    return max(times) if times and (start is None or max(times) >= start) else start


def _files(run_dir: Path) -> Iterable[Path]:
    paths = RunPaths(run_dir)
    return (paths.metrics, manifest_path(run_dir), paths.checkpoint)
