"""A submission limit holds trials, uncounted, until a job ends; the study completes in one launch."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from submitit.core.utils import FailedJobError

from sweep.commands.status import render, trial_rows
from sweep.errors import SweepError
from sweep.executors.base import Job, JobFn, SubmitHeld
from sweep.executors.local import LocalExecutor
from sweep.executors.slurm_submit import Submitter
from sweep.launcher.held import Held
from sweep.launcher.loop import Launcher
from sweep.store.records import TrialRecord
from sweep.store.storage import default_url
from sweep.study import load_study
from sweep.study.spec import StudySpec
from tests.sweep.conftest import new_study

# Logs two epochs, 0.3 s apart.
PROGRAM = """\
import json, os, sys, time
for epoch in (1, 2):
    time.sleep(0.3)
    with open(os.path.join(os.environ["SWEEP_RUN_DIR"], "metrics.jsonl"), "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "val_acc": float(sys.argv[1])}) + "\\n")
"""


class LimitedLocal(LocalExecutor):
    """A local executor that refuses a job, as MaxSubmitJobs=2 would, while 2 of its jobs live."""

    def __init__(self, *args: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit = limit
        self.jobs: list[Job] = []
        self.refusals = 0

    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        if sum(not job.done() for job in self.jobs) >= self.limit:
            self.refusals += 1
            raise SubmitHeld("QOSMaxSubmitJobPerUserLimit")
        job = super().submit(fn, config, run_dir)
        self.jobs.append(job)
        return job


def _program_study(tmp_path: Path, name: str, values: list[float]) -> tuple[StudySpec, optuna.Study, Path]:
    """A grid study `name` of PROGRAM over `values` (2 epochs each), stored in `tmp_path`/results."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    study_file = tmp_path / f"{name}.toml"
    study_file.write_text(
        f"""[study]
name = "{name}"
metric = "val_acc"
sampler = "grid"
[train]
epochs = 2
[space]
value = {values}
[program]
command = ["{sys.executable}", "prog.py", "{{value}}"]
[resources]
gpus = 0
cpus = 1
"""
    )
    spec = load_study(study_file)
    results = tmp_path / "results"
    results.mkdir()
    return spec, new_study(spec, results), results


def test_a_submission_limit_holds_trials_until_a_job_ends_and_counts_no_submission(tmp_path: Path) -> None:
    spec, study, results = _program_study(tmp_path, "held", [0.1, 0.2, 0.3, 0.4, 0.5])
    executor = LimitedLocal(spec.resources, parallel=4, limit=2)
    lines: list[str] = []
    Launcher(spec, study, executor, results_dir=results, parallel=4, out=lines.append).run()

    trials = optuna.load_study(study_name="held", storage=default_url(results)).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5  # one launch, nothing failed
    assert sorted(t.params["value"] for t in trials) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert [TrialRecord.of(t).submissions for t in trials] == [1] * 5  # no refusal counted
    assert executor.refusals >= 1 and len(executor.jobs) == 5  # refused, and each started once
    assert not [t.number for t in trials if TrialRecord.of(t).waiting]  # none left "waiting"
    waiting = [line for line in lines if "waiting: submission limit (QOSMaxSubmitJobPerUserLimit)" in line]
    assert waiting and len(waiting) <= executor.refusals
    assert any("submitted after the submission limit let it" in line for line in lines)


def test_a_held_trial_is_due_when_a_job_ends_or_after_the_retry_interval(
    monkeypatch: Any, tmp_path: Path
) -> None:
    said: list[str] = []
    held = Held("s", said.append)
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    trial = study.ask()
    trial.set_user_attr("executor", "slurm")
    held.hold(trial, 0, SubmitHeld("AssocMaxSubmitJobLimit"), running=3)
    assert said == [
        "s: waiting: submission limit (AssocMaxSubmitJobLimit); trial 0 held until one of the study's 3 "
        "running jobs ends"
    ]
    # `sweep status` shows why the RUNNING trial has no job
    (line,) = [line for line in render("s", "val_acc", trial_rows(study)) if line.lstrip().startswith("#0 ")]
    assert "waiting: submission limit (AssocMaxSubmitJobLimit)" in line, line
    assert held.due(3) is None  # nothing ended yet
    assert held.due(2) is not None and not held  # a job ended: tried again
    held.released(trial)  # its job was taken: no longer waiting
    assert "waiting" not in " ".join(render("s", "val_acc", trial_rows(study)))
    held.hold(trial, 0, SubmitHeld("AssocMaxSubmitJobLimit"), running=2)
    held.retry_s = 0.0
    assert held.due(2) is not None  # nothing ended, but the retry interval passed


DOWN = "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"


class FlakySbatch:
    """An sbatch stand-in (submitit's executor, as the Submitter calls it) that cannot reach the
    controller while `down()` says so."""

    def __init__(self, down: Any) -> None:
        self.down = down
        self.calls: list[float] = []
        self.folder = Path()

    def submit(self, fn: Any, *args: Any) -> Any:
        self.calls.append(time.monotonic())
        if self.down():
            raise FailedJobError(DOWN)
        return type("Job", (), {"job_id": str(len(self.calls))})()


class OutageLocal(LimitedLocal):
    """A local executor whose submissions first go through the SLURM Submitter (`hold=True`, as the slurm
    executor's do) to a FlakySbatch."""

    def __init__(self, *args: Any, sbatch: FlakySbatch, lines: list[str], **kwargs: Any) -> None:
        super().__init__(*args, limit=99, **kwargs)
        self.sbatch = sbatch
        self.submitter = Submitter(3600, lines.append)

    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        self.submitter.submit(self.sbatch, fn, (), "n", what="w", hold=True)  # type: ignore[arg-type]
        return super().submit(fn, config, run_dir)


def test_an_outage_holds_a_submission_while_the_loop_records_the_other_trials_ends(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Fault: one sbatch that could not reach slurmctld held the loop inside Submitter.submit's back-off
    for up to scheduler_outage_min: no end recorded, no prune, no stall check."""
    monkeypatch.setattr("sweep.executors.slurm_submit.FIRST_RETRY_S", 0.2)
    monkeypatch.setattr("sweep.executors.slurm_submit.adopt", lambda folder, name: None)  # no squeue here
    # `scontrol ping` says UP, whatever this machine's own cluster is doing (a SLURM test run beside this
    # one may have stopped its controller): the held retries are the FlakySbatch's to answer
    monkeypatch.setattr("sweep.executors.slurm_submit.controller_problem", lambda: None)
    spec, study, results = _program_study(tmp_path, "outage", [0.1, 0.2])
    lines: list[str] = []
    # the controller goes away once trial 0's job is in, and comes back when trial 0's end is recorded
    sbatch = FlakySbatch(lambda: bool(executor.jobs) and not any("trial 0 complete" in x for x in lines))
    executor = OutageLocal(spec.resources, parallel=2, lines=lines, sbatch=sbatch)
    Launcher(spec, study, executor, results_dir=results, parallel=2, out=lines.append).run()

    trials = optuna.load_study(study_name="outage", storage=default_url(results)).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, lines
    assert [TrialRecord.of(t).submissions for t in trials] == [1, 1]  # a held try is no submission
    said = [line.split("  ")[0] for line in lines if not line.startswith("trial 0 epoch")]
    outage = next(i for i, line in enumerate(said) if line.startswith("slurm: sbatch failed ("))
    back = next(i for i, line in enumerate(said) if line.startswith("slurm: sbatch answers again"))
    # trial 0's end was recorded during the outage, while trial 1's submission was held
    assert outage < said.index("trial 0 complete") < back < said.index("trial 1 submitted"), lines
    assert len(sbatch.calls) >= 4  # held and tried again by the loop, on the back-off
    assert not [line for line in lines if "submission limit" in line]  # an outage is not a limit


def test_a_held_submission_during_an_outage_asks_scontrol_ping_not_sbatch(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """sbatch takes 9 s to fail with slurmctld down (the dev cluster's): a held trial's every try asks
    `scontrol ping` (milliseconds) first and calls sbatch only once it says UP."""
    monkeypatch.setattr("sweep.executors.slurm_submit.adopt", lambda folder, name: None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\ncat {bin_dir}/ping.out\n")
    (bin_dir / "scontrol").chmod(0o755)
    (bin_dir / "ping.out").write_text("Slurmctld(primary) at vm is DOWN\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    lines: list[str] = []
    submitter = Submitter(3600, lines.append)
    down = [True]
    sbatch = FlakySbatch(lambda: down[0])
    retries = []
    for _ in range(3):
        try:
            submitter.submit(sbatch, None, (), "n", what="w", hold=True)  # type: ignore[arg-type]
        except SubmitHeld as held:
            retries.append(held.retry_s)
    assert retries == [2.0, 4.0, 8.0] and sbatch.calls == []  # not even the first try
    assert lines[0].startswith("slurm: sbatch failed (scontrol ping: the controller is down); retrying")
    (bin_dir / "ping.out").write_text("Slurmctld(primary) at vm is UP\n")
    down[0] = False
    assert submitter.submit(sbatch, None, (), "n", what="w", hold=True) == "1"  # type: ignore[arg-type]
    assert len(lines) == 2 and lines[1].startswith("slurm: sbatch answers again after")
    with pytest.raises(SweepError, match="sbatch has failed for"):  # the outage limit still ends it
        late = Submitter(0.0, lines.append)
        down[0] = True
        for _ in range(2):
            with contextlib.suppress(SubmitHeld):
                late.submit(sbatch, None, (), "n", what="w", hold=True)  # type: ignore[arg-type]


def test_a_held_submission_whose_failed_sbatch_was_taken_adopts_the_job_on_its_next_try(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """An sbatch that timed out after slurmctld took the job: the next try finds the job by its name
    (squeue) and adopts it, without a second sbatch."""
    found: list[str | None] = [None, "77"]  # squeue lists it from the second look on
    monkeypatch.setattr("sweep.executors.slurm_submit.adopt", lambda folder, name: found.pop(0))
    monkeypatch.setattr("sweep.executors.slurm_submit.controller_problem", lambda: None)
    lines: list[str] = []
    submitter = Submitter(3600, lines.append)
    sbatch = FlakySbatch(lambda: True)
    with pytest.raises(SubmitHeld):
        submitter.submit(sbatch, None, (), "n", what="w", hold=True)  # type: ignore[arg-type]
    assert submitter.submit(sbatch, None, (), "n", what="w", hold=True) == "77"  # type: ignore[arg-type]
    assert len(sbatch.calls) == 1 and found == []  # one sbatch, two looks
    assert lines[-1].startswith("slurm: sbatch answers again after")
