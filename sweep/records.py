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
    study   metric       the metric the trials' values are (val_acc, ...)
            plan         what the first launch planned (`sweep.study.plan.plan_fingerprint`)
            gpus         [resources] gpus of the last launch, for GPU-hours without the study file

Everything else in the package reads these through `TrialRecord` / `StudyRecord` and writes them
through the functions below, so a misspelt key is an AttributeError, not a silent miss.
"""

from __future__ import annotations

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

METRIC = "metric"
PLAN = "plan"
GPUS = "gpus"


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
        )


def trial_attrs(*, config: int, repeat: int, executor: str, launcher: str) -> dict[str, Any]:
    """The attributes a trial gets when it is created: which run it is and who runs it."""
    return {CONFIG: config, REPEAT: repeat, EXECUTOR: executor, LAUNCHER: launcher}


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
) -> None:
    """Store the given fields of a trial's record (one storage commit each; None leaves a field as is)."""
    values = {
        EXECUTOR: executor,
        LAUNCHER: launcher,
        HEARTBEAT: heartbeat,
        RUN_DIR: None if run_dir is None else str(run_dir),
        SUBMISSIONS: submissions,
        JOB_ID: job_id,
        TRACEBACK: traceback,
        DIVERGED: diverged,
    }
    for key, value in values.items():
        if value is not None:
            trial.set_user_attr(key, value)


@dataclass(frozen=True)
class StudyRecord:
    """What sweep stored with a study, for the commands that read it without its study file."""

    metric: str | None
    plan: dict[str, Any] | None
    gpus: int | None

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord:
        attrs = study.user_attrs
        plan, gpus = attrs.get(PLAN), attrs.get(GPUS)
        return cls(
            metric=None if attrs.get(METRIC) is None else str(attrs[METRIC]),
            plan=plan if isinstance(plan, dict) else None,
            gpus=gpus if isinstance(gpus, int) and not isinstance(gpus, bool) else None,
        )


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


def failure_line(reason: str) -> str:
    """The line of a failure that says what happened: a traceback's last, less the exception's class
    when it is sweep's way of saying so (a program that failed)."""
    last = reason.strip().splitlines()[-1] if reason.strip() else "unknown"
    return re.sub(r"^[\w.]*ProgramFailed: ", "", last)
