"""The stored schema: what sweep keeps in Optuna's user attributes, read and written only here.

Optuna stores a trial's params, state, value and intermediate values (one per epoch) itself. What
sweep adds is in user attributes, whose keys are this module's constants:

    trial   config       index of the trial's configuration: planned ones first, in file order,
                         then sampled ones (int)
            repeat       seed offset: the trial runs seed + repeat (int, default 0)
            executor     debug | local | slurm: who ran the trial's job
            launcher     `host:pid` of the launcher that watches (or last watched) the trial
            heartbeat    Unix time the launcher last said it was alive (float)
            run_dir      the trial's run directory (str)
            submissions  how often a job was started for the trial (int)
            job_id       the trial's latest job (str; a local job's pid as text)
            traceback    why a FAILed trial failed (str)
            diverged     for a trial whose metric became NaN or infinite (told PRUNED): what and when
                         (str, "val_loss nan at epoch 3/50")
            rung         synchronous halving: the epoch the trial's current (or next) job stops after (int)
            paused       synchronous halving: the rung epoch the trial waits at with no job; 0 while
                         a job runs (int)
            confirm      true for a confirmation trial: a top configuration rerun with a further seed
                         once the search was done ([study] confirm_top); absent for the search's
    study   metric       the metric the trials' values are (val_acc, ...)
            plan         what the first launch planned, a grid's latest launch
                         (`sweep.study.plan.plan_fingerprint`)
            gpus         [resources] gpus of the last launch, for GPU-hours without the study file
            detached     where the study's detached launcher runs (`sweep launch --detach`): a
                         `DetachedLauncher` as a dict
            budget       the last launch's GPU-hour budget (float; absent: none), for `sweep status`
            base         the values inherited from [study] base's winner at the first launch, and
                         where they came from (`sweep.base.Inherited` as a dict)

Everything else in the package reads these through `TrialRecord` / `StudyRecord` and writes them
through the functions below, so a misspelt key is an AttributeError, not a silent miss.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import last_line

CONFIG = "config"
REPEAT = "repeat"
EXECUTOR = "executor"
LAUNCHER = "launcher"
HEARTBEAT = "heartbeat"
RUN_DIR = "run_dir"
SUBMISSIONS = "submissions"
JOB_ID = "job_id"
TRACEBACK = "traceback"
DIVERGED = "diverged"
STALLED = "stalled"  # a RUNNING trial with no new epoch for long: what the launcher saw (`launcher.stall`)
WAITING = "waiting"  # a held trial's (no job yet): why, e.g. "submission limit (AssocMaxSubmitJobLimit)"
CONFIRM = "confirm"
RUNG = "rung"  # synchronous halving (`sweep.launcher.rungs`): where its segment stops
PAUSED = "paused"  # synchronous halving: the rung epoch it waits at (0: a job runs)

METRIC = "metric"
PLAN = "plan"
GPUS = "gpus"
DETACHED = "detached"
BUDGET = "budget"
BASE = "base"


@dataclass(frozen=True)
class TrialRecord:
    """What sweep stored of one trial (None where nothing was stored)."""

    config: int | None
    repeat: int
    executor: str | None
    launcher: str | None
    heartbeat: float | None
    run_dir: Path | None
    submissions: int
    job_id: str | None
    traceback: str | None
    diverged: str | None = None
    waiting: str | None = None  # why a RUNNING trial has no job yet (a submission limit holds it)
    stalled: str | None = None  # a RUNNING trial that logs no new epoch: since when
    confirm: bool = False  # a confirmation trial (a further seed of a top configuration)
    rung: int | None = None  # synchronous halving: the epoch its current or next job stops after
    paused: int = 0  # synchronous halving: the rung epoch it waits at with no job (0: none)

    @property
    def key(self) -> tuple[int | None, int]:
        """(config, repeat): which planned or sampled run the trial is."""
        return self.config, self.repeat

    @classmethod
    def of(cls, trial: FrozenTrial | optuna.Trial) -> TrialRecord:
        return cls.from_attrs(trial.user_attrs)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> TrialRecord:
        config, run_dir, job_id, heartbeat = (attrs.get(k) for k in (CONFIG, RUN_DIR, JOB_ID, HEARTBEAT))
        return cls(
            config=config if isinstance(config, int) else None,
            repeat=int(attrs.get(REPEAT, 0)),
            executor=attrs.get(EXECUTOR),
            launcher=None if attrs.get(LAUNCHER) is None else str(attrs[LAUNCHER]),
            heartbeat=None if heartbeat is None else float(heartbeat),
            run_dir=Path(run_dir) if run_dir else None,
            submissions=int(attrs.get(SUBMISSIONS, 0)),
            job_id=None if job_id is None else str(job_id),
            traceback=attrs.get(TRACEBACK),
            diverged=None if attrs.get(DIVERGED) is None else str(attrs[DIVERGED]),
            waiting=str(attrs[WAITING]) if attrs.get(WAITING) else None,  # "" once its job was taken
            stalled=str(attrs[STALLED]) if attrs.get(STALLED) else None,  # "" once epochs came again
            confirm=attrs.get(CONFIRM) is True,
            rung=attrs[RUNG] if isinstance(attrs.get(RUNG), int) else None,
            paused=int(attrs.get(PAUSED, 0)),
        )


def trial_attrs(
    *, config: int, repeat: int, executor: str, launcher: str, confirm: bool = False
) -> dict[str, Any]:
    """The attributes a trial gets when it is created: which run it is and who runs it."""
    attrs: dict[str, Any] = {CONFIG: config, REPEAT: repeat, EXECUTOR: executor, LAUNCHER: launcher}
    if confirm:  # absent for the search's trials: a study stored before confirmation reads the same
        attrs[CONFIRM] = True
    return attrs


def running_template(
    params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution], attrs: Mapping[str, Any]
) -> FrozenTrial:
    """A trial to create RUNNING, started now, with its params and `trial_attrs` in one transaction."""
    return FrozenTrial(
        number=-1,  # Optuna numbers the trial in the creating transaction
        trial_id=-1,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=datetime.now(),  # naive local time, as Optuna's own ask stores
        datetime_complete=None,
        params=dict(params),
        distributions=dict(distributions),
        user_attrs=dict(attrs),
        system_attrs={},
        intermediate_values={},
    )


def mark_sampled(trial: optuna.Trial, config: int) -> None:
    """A configuration the sampler suggested: its index, seed offset 0."""
    trial.set_user_attr(CONFIG, config)
    trial.set_user_attr(REPEAT, 0)


def is_sweep_trial(trial: optuna.Trial | FrozenTrial) -> bool:
    """Whether the trial was made by a sweep launcher (it knows its configuration)."""
    return CONFIG in trial.user_attrs


def write(
    trial: optuna.Trial,
    *,
    executor: str | None = None,
    launcher: str | None = None,
    heartbeat: float | None = None,
    run_dir: Path | None = None,
    submissions: int | None = None,
    job_id: str | None = None,
    traceback: str | None = None,
    diverged: str | None = None,
    waiting: str | None = None,
    stalled: str | None = None,
    rung: int | None = None,
    paused: int | None = None,
) -> None:
    """Store the given fields of a trial's record (one storage commit each; None leaves a field as is,
    `waiting=""` and `stalled=""` clear theirs)."""
    values = {
        EXECUTOR: executor,
        LAUNCHER: launcher,
        HEARTBEAT: heartbeat,
        RUN_DIR: None if run_dir is None else str(run_dir),
        SUBMISSIONS: submissions,
        JOB_ID: job_id,
        TRACEBACK: traceback,
        DIVERGED: diverged,
        WAITING: waiting,
        STALLED: stalled,
        RUNG: rung,
        PAUSED: paused,
    }
    for key, value in values.items():
        if value is not None:
            trial.set_user_attr(key, value)


@dataclass(frozen=True)
class DetachedLauncher:
    """Where a study's detached launcher runs, and where its output goes."""

    kind: str  # local (a background process) | slurm (a job of its own)
    log: str  # its output file (for a SLURM launcher, the folder of its job's logs until it starts)
    since: float  # Unix time it was started
    job_id: str | None = None  # slurm
    host: str | None = None  # local: from the start; slurm: once the job runs
    pid: int | None = None
    started: int | None = None  # the process's start time (`sweep.procs.start_ticks`)
    launcher_ids: tuple[str, ...] = ()  # each run's launcher id (a requeued SLURM launcher runs again)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "launcher_ids": list(self.launcher_ids)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetachedLauncher | None:
        """The record, or None when `data` is not one (a damaged attribute is treated as absent)."""
        try:
            return cls(**{**data, "launcher_ids": tuple(data.get("launcher_ids", ()))})
        except TypeError:
            return None


@dataclass(frozen=True)
class StudyRecord:
    """What sweep stored with a study, for the commands that read it without its study file."""

    metric: str | None
    plan: dict[str, Any] | None
    gpus: int | None
    detached: DetachedLauncher | None = None
    budget: float | None = None  # GPU-hours
    base: dict[str, Any] | None = None  # what [study] base supplied (`sweep.base.Inherited.to_dict`)

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord:
        attrs = study.user_attrs
        plan, gpus, detached = attrs.get(PLAN), attrs.get(GPUS), attrs.get(DETACHED)
        budget, base = attrs.get(BUDGET), attrs.get(BASE)
        return cls(
            metric=None if attrs.get(METRIC) is None else str(attrs[METRIC]),
            plan=plan if isinstance(plan, dict) else None,
            gpus=gpus if isinstance(gpus, int) and not isinstance(gpus, bool) else None,
            detached=DetachedLauncher.from_dict(detached) if isinstance(detached, dict) else None,
            budget=float(budget)
            if isinstance(budget, int | float) and not isinstance(budget, bool)
            else None,
            base=base if isinstance(base, dict) else None,
        )


def write_detached(study: optuna.Study, detached: DetachedLauncher) -> None:
    """Store where the study's detached launcher runs."""
    study.set_user_attr(DETACHED, detached.to_dict())


def write_study(study: optuna.Study, *, metric: str, plan: dict[str, Any], gpus: int) -> None:
    """What a launch stores with its study: the metric and plan once, the GPUs per trial each time."""
    stored = StudyRecord.of(study)
    if stored.metric is None:
        study.set_user_attr(METRIC, metric)
        with warnings.catch_warnings():  # Optuna calls metric names experimental
            warnings.simplefilter("ignore")
            study.set_metric_names([metric])  # the dashboard labels the value with it
    if stored.plan is None:
        study.set_user_attr(PLAN, plan)
    if stored.gpus != gpus:
        study.set_user_attr(GPUS, gpus)


def write_plan(study: optuna.Study, plan: dict[str, Any]) -> None:
    """Store the latest launch's plan (a grid's file may change between launches) when it differs."""
    if StudyRecord.of(study).plan != plan:
        study.set_user_attr(PLAN, plan)


def write_base(study: optuna.Study, base: dict[str, Any]) -> None:
    """Store what [study] base supplied, once: the values stay as the first launch found them."""
    if StudyRecord.of(study).base is None:
        study.set_user_attr(BASE, base)


def write_budget(study: optuna.Study, budget: float | None) -> None:
    """Store the launch's GPU-hour budget (None: no budget) when it differs from the stored one."""
    if StudyRecord.of(study).budget != budget:
        study.set_user_attr(BUDGET, budget)


def failure_line(reason: str) -> str:
    """The line of a failure that says what happened: a traceback's last, less the exception's class
    when it is sweep's way of saying so (a program that failed, a job that would requeue for ever); the
    failed rank of a trial of several kept in front ("rank 1: ...")."""
    last = last_line(reason, empty="unknown")
    return re.sub(r"^(rank \d+: )?[\w.]*(ProgramFailed|UserError): ", r"\1", last)
