"""A job's requeues as its run dir records them: said by the launcher, and a time limit reached twice
without a new epoch ends the loop (squeue's time left comes from the `fake_slurm` scripts here; the
real cluster's run is in test_slurm_outages.py)."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from submitit.helpers import DelayedSubmission

from sweep.errors import SweepError
from sweep.executors import program, requeues
from sweep.executors.base import Outcome
from sweep.executors.debug import DebugJob
from sweep.executors.job import TrainJob
from sweep.executors.program import ProgramJob
from sweep.launcher.watched import Watched
from sweep.study.spec import Program
from trainer.paths import RunPaths


def _epochs(run_dir: Path, count: int) -> None:
    lines = "".join(
        json.dumps({"epoch": epoch, "score": 0.1 * epoch}) + "\n" for epoch in range(1, count + 1)
    )
    RunPaths(run_dir).metrics.write_text(lines)


@pytest.fixture
def in_job(monkeypatch: pytest.MonkeyPatch, fake_slurm: Path) -> Path:
    """A SLURM job's environment; squeue says the time it has left (bin/squeue.out)."""
    monkeypatch.setenv("SLURM_JOB_ID", "88")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    return fake_slurm


def test_a_time_limit_reached_twice_without_a_new_epoch_ends_the_requeues(
    in_job: Path, tmp_path: Path
) -> None:
    (in_job / "squeue.out").write_text("1:20\n")  # 80 s left: the time limit's signal
    _epochs(tmp_path, 2)
    first = requeues.record(tmp_path)
    assert (first.cause, first.epoch, first.job_id) == ("time limit", 2, "88")
    _epochs(tmp_path, 3)  # the next attempt logged an epoch: progress
    assert requeues.record(tmp_path).epoch == 3
    with pytest.raises(
        SweepError, match=r"time limit reached twice without progress .*after epoch 3.*timeout_min"
    ):
        requeues.record(tmp_path)  # no epoch since the last one
    assert [r.epoch for r in requeues.read(tmp_path)] == [2, 3]  # the refused one is not recorded
    assert "-j 88 -o %L" in (in_job / "squeue.calls").read_text()


# SLURM's time-limit signal reaches the job's wrapper (this process) and the program at once
SIGNALLED_AT_THE_TIME_LIMIT = """\
import os, signal, time
os.kill(os.getppid(), signal.SIGUSR2)
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGUSR2)
"""


def test_a_refused_requeue_fails_the_trial_with_its_reason_even_where_the_handler_lost_its_error(
    in_job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault (a CI run on the real cluster): SLURM sent SIGCONT with the second time limit's SIGUSR2;
    submitit's SIGUSR2 handler ran inside the logging call of its SIGCONT handler, the logging module
    swallowed the error that ends the trial, and the trial failed as "exited with status -12"."""
    (in_job / "squeue.out").write_text("1:20\n")  # 80 s left: the time limit's signal
    requeues.record(tmp_path)  # the first time limit, before any epoch
    monkeypatch.setattr(program, "TIME_LIMIT_SIGNAL_WAIT_S", 0.2)
    job = ProgramJob(Program(command=(sys.executable, "-c", SIGNALLED_AT_THE_TIME_LIMIT)), "score")
    values, run_dir = {"lr": 0.1}, str(tmp_path)

    def handler_whose_error_is_lost(signum: int, frame: Any) -> None:
        # submitit's handler (it calls `checkpoint`), run where logging's handleError swallows errors
        with contextlib.suppress(Exception):
            job.checkpoint(values, run_dir)

    previous = signal.signal(signal.SIGUSR2, handler_whose_error_is_lost)
    try:
        with pytest.raises(SweepError, match=r"^time limit reached twice without progress .*timeout_min"):
            job(values, run_dir)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert len(requeues.read(tmp_path)) == 1  # the refused requeue is not recorded


@pytest.mark.parametrize("left", ["1-02:00:00\n", ""])  # far from the end; squeue says nothing
def test_a_preemption_or_an_unknown_cause_is_requeued_however_often(
    in_job: Path, tmp_path: Path, left: str
) -> None:
    (in_job / "squeue.out").write_text(left)
    for _ in range(3):
        done = requeues.record(tmp_path)
    assert done.cause == ("preemption" if left else requeues.UNKNOWN)
    assert len(requeues.read(tmp_path)) == 3


def test_the_launcher_says_each_requeue_once(in_job: Path, tmp_path: Path) -> None:
    class Trial:
        number = 4

    item = Watched(Trial(), DebugJob("88", Outcome("success")), {"epochs": 5}, tmp_path)  # type: ignore[arg-type]
    assert item.requeue_lines() == []
    (in_job / "squeue.out").write_text("0:50\n")
    _epochs(tmp_path, 2)
    requeues.record(tmp_path)
    said = "trial 4 job 88 requeued (time limit) after epoch 2/5; requeue 1 of the trial, resuming from its"
    assert item.requeue_lines() == [f"{said} checkpoint"]
    assert item.requeue_lines() == []  # said once
    (tmp_path / requeues.FILE).open("a").write("{cut short\n")  # a torn line is skipped
    _epochs(tmp_path, 3)
    requeues.record(tmp_path)
    assert [line.split(";")[1] for line in item.requeue_lines()] == [
        " requeue 2 of the trial, resuming from its checkpoint"
    ]


# squeue's time left at the checkpoint tells a time limit (submitit signals 90 s before it) from a
# preemption: 180 s or less is the time limit. Written out, so a moved limit or `<=` turned into `<` fails.
@pytest.mark.parametrize(
    ("left", "cause"), [("2:59", "time limit"), ("3:00", "time limit"), ("3:01", "preemption")]
)
def test_a_checkpoint_with_at_most_180_s_left_is_the_time_limit(
    in_job: Path, tmp_path: Path, left: str, cause: str
) -> None:
    (in_job / "squeue.out").write_text(f"{left}\n")
    assert requeues.record(tmp_path).cause == cause


def _time_limit(in_job: Path, run_dir: Path) -> DelayedSubmission | None:
    """What the job's `checkpoint` does at its time limit (as submitit calls it, with the job's args)."""
    (in_job / "squeue.out").write_text("1:30\n")
    return TrainJob().checkpoint({"epochs": 5}, str(run_dir))


@pytest.mark.parametrize("epochs", [0, 2])
def test_a_job_is_requeued_at_its_first_time_limit_and_not_at_a_second_without_a_new_epoch(
    in_job: Path, tmp_path: Path, epochs: int
) -> None:
    _epochs(tmp_path, epochs)
    assert isinstance(_time_limit(in_job, tmp_path), DelayedSubmission)  # the first: requeued
    after = f"after epoch {epochs}" if epochs else "before its first epoch"
    said = rf"time limit reached twice without progress \(each attempt ended {after}\)"
    with pytest.raises(SweepError, match=said):
        _time_limit(in_job, tmp_path)
    assert [r.epoch for r in requeues.read(tmp_path)] == [epochs]


def test_a_new_epoch_between_two_time_limits_lets_the_job_requeue_again(in_job: Path, tmp_path: Path) -> None:
    for epochs in (1, 2, 3):  # one new epoch per attempt: progress each time
        _epochs(tmp_path, epochs)
        assert isinstance(_time_limit(in_job, tmp_path), DelayedSubmission)
    with pytest.raises(SweepError, match="after epoch 3"):
        _time_limit(in_job, tmp_path)  # the fourth attempt logged nothing: the loop ends here
    assert [r.epoch for r in requeues.read(tmp_path)] == [1, 2, 3]


def test_a_preemption_between_time_limits_is_not_a_time_limit_reached_twice(
    in_job: Path, tmp_path: Path
) -> None:
    _epochs(tmp_path, 2)
    assert isinstance(_time_limit(in_job, tmp_path), DelayedSubmission)
    (in_job / "squeue.out").write_text("2-00:00:00\n")
    assert requeues.record(tmp_path).cause == "preemption"  # no new epoch, but not its time limit
    assert isinstance(_time_limit(in_job, tmp_path), DelayedSubmission)
