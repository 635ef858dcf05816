"""A submission limit holds trials, uncounted, until a job ends; the study completes in one launch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweep.commands.status import render, trial_rows
from sweep.executors.base import Job, JobFn, SubmitHeld
from sweep.executors.local import LocalExecutor
from sweep.launcher.held import Held
from sweep.launcher.loop import Launcher
from sweep.store.records import TrialRecord
from sweep.store.storage import default_url
from sweep.study import load_study
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


def test_a_submission_limit_holds_trials_until_a_job_ends_and_counts_no_submission(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    study_file = tmp_path / "held.toml"
    study_file.write_text(
        f"""[study]
name = "held"
metric = "val_acc"
sampler = "grid"
[train]
epochs = 2
[space]
value = [0.1, 0.2, 0.3, 0.4, 0.5]
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
    study = new_study(spec, results)
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
    held.hold(trial, 0, "AssocMaxSubmitJobLimit", running=3)
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
    held.hold(trial, 0, "AssocMaxSubmitJobLimit", running=2)
    monkeypatch.setattr("sweep.launcher.held.RETRY_S", 0.0)
    assert held.due(2) is not None  # nothing ended, but the retry interval passed
