"""One trial's row, as `sweep status` and the live view show it: read from the stored trial and its run
dir, once, by one rule (epochs from the metrics file, else the values the launcher reported)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from sweep.executors.files import JobFiles
from sweep.store.records import TrialRecord
from sweep.study.spec import best_of
from trainer.metrics import metric_values, read_epochs
from trainer.paths import RunPaths


@dataclass(frozen=True)
class TrialRow:
    """What is shown of one trial."""

    number: int
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    params: dict[str, Any]
    epochs_done: int  # lines in the run's metrics.jsonl (or epochs reported, without a run dir)
    epochs: int | None  # the run's configured epochs, from its config.json / params.json
    best: float | None  # the trial's value; for a running or pruned trial, its best epoch's
    job_id: str | None
    executor: str | None = None  # slurm | local | debug
    job_state: str | None = None  # what the scheduler says of a RUNNING trial's job
    scheduler_error: str | None = None  # why the scheduler could not say it (once for the table)
    run_dir: str | None = None
    launcher: str | None = None  # host:pid of the launcher that watches (or last watched) the trial
    reason: str | None = None  # why a FAILed trial failed: its whole text (`sweep status --trial N`)
    diverged: str | None = None  # what diverged, and when, of a trial stopped for a NaN/infinite metric
    stalled: str | None = None  # a RUNNING trial the launcher saw log no new epoch for long
    orphaned: bool = False  # a RUNNING trial whose job has ended, with no launcher to resume or fail it
    waiting: str | None = None  # why a submission limit holds the trial's job back
    paused: int = 0  # synchronous halving: the rung epoch a RUNNING trial waits at with no job (0: none)
    last: float | None = None  # the study metric at the last epoch
    epoch_seconds: float | None = None  # mean over the epochs done

    @property
    def eta_seconds(self) -> float | None:
        """Mean epoch time x epochs left; None when either is unknown."""
        if self.epoch_seconds is None or self.epochs is None:
            return None
        return self.epoch_seconds * max(0, self.epochs - self.epochs_done)

    @property
    def note(self) -> str:
        """What the launcher stored of a running trial that its bar alone would not say."""
        if self.paused:
            return f"paused at epoch {self.paused}"
        if self.stalled:
            return "stalled"
        return f"waiting: {self.waiting}" if self.waiting else ""


def trial_row(trial: FrozenTrial, metric: str, direction: str, now: datetime | None = None) -> TrialRow:
    """The row of `trial`: its epochs and metric from its run dir's metrics.jsonl (a program's trial whose
    run dir is gone, or a trial not started: the values the launcher reported)."""
    record = TrialRecord.of(trial)
    history = read_epochs(RunPaths(record.run_dir).metrics) if record.run_dir is not None else []
    if history:
        values = [value for _, value in metric_values(history, metric)]
    else:
        values = [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]
    epochs_done = len(history) or len(trial.intermediate_values)
    times = [epoch["epoch_seconds"] for epoch in history if "epoch_seconds" in epoch]
    if times:
        epoch_seconds: float | None = sum(times) / len(times)
    else:  # a program that logs no epoch times: the trial's time so far per epoch
        elapsed = elapsed_seconds(trial, now or datetime.now())
        epoch_seconds = elapsed / epochs_done if epochs_done else None
    running = trial.state == TrialState.RUNNING
    return TrialRow(
        number=trial.number,
        state=trial.state.name,
        params=dict(trial.params),
        epochs_done=epochs_done,
        epochs=configured_epochs(record.run_dir) if record.run_dir is not None else None,
        best=trial.value if trial.value is not None else best_of(values, direction),
        job_id=record.job_id,
        executor=record.executor,
        run_dir=None if record.run_dir is None else str(record.run_dir),
        launcher=record.launcher,
        reason=record.traceback if trial.state == TrialState.FAIL else None,
        diverged=record.diverged,
        # a trial a submission limit holds has no job to ask SLURM about: its reason is its state
        job_state=f"waiting: {record.waiting}" if record.waiting and record.job_id is None else None,
        stalled=record.stalled if running else None,
        waiting=record.waiting if running else None,
        paused=record.paused if running else 0,
        last=values[-1] if values else None,
        epoch_seconds=epoch_seconds,
    )


def configured_epochs(run_dir: Path) -> int | None:
    """`epochs` of the run's config.json (the trainer's), else of its params.json (a program's)."""
    for path in (RunPaths(run_dir).config, JobFiles(run_dir).params):
        try:
            epochs = json.loads(path.read_text()).get("epochs")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(epochs, int) and not isinstance(epochs, bool):
            return epochs
    return None


def elapsed_seconds(trial: FrozenTrial, now: datetime) -> float:
    """Seconds the trial's job has taken so far (a trial never started: 0)."""
    if trial.datetime_start is None:
        return 0.0
    end = trial.datetime_complete or (now if trial.state == TrialState.RUNNING else trial.datetime_start)
    return max(0.0, (end - trial.datetime_start).total_seconds())
