"""A program killed by SLURM's signal while its job is requeued is not a failed trial; a requeue SLURM
did without the job's own checkpoint gets a launcher line. Against the `fake_slurm` scripts (squeue's
answer is bin/squeue.out); the real race on the dev cluster is in test_slurm_outages.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from submitit.core.utils import cloudpickle_dump

from sweep.executors import requeues
from sweep.executors.files import JobFiles, log_paths
from sweep.executors.slurm import SlurmExecutor, SlurmJob
from sweep.executors.slurm_queries import JobState
from sweep.executors.slurm_requeue import attempt_restart, killed_by_signal, verdict
from sweep.launcher.watched import Watched
from sweep.study import Resources
from trainer.manifest import Attempt

KILLED = (
    "Traceback (most recent call last):\nsweep.executors.program.ProgramFailed: python exited with status -15"
)


def _attempt(job_id: str, restart: int | None, *, ended: bool = True) -> Attempt:
    return Attempt(
        number=1, started="2026-01-01T00:00:00+00:00", ended="2026-01-01T00:01:00+00:00" if ended else None,
        hostname="vm", program_dir="/p", git_commit=None, git_dirty=None, git_diff_sha256=None,
        git_untracked=None, python="3", python_executable="python", torch=None, cuda=None, cudnn=None,
        gpus=None, gpu_driver=None, slurm_job_id=job_id, slurm_partition="debug", slurm_node="vm",
        slurm_restart_count=restart, packages_sha256="0", packages=0,
    )  # fmt: skip


def _manifest(run_dir: Path, *attempts: Attempt) -> None:
    data = {"format": 1, "attempts": [a.to_dict() for a in attempts]}
    (run_dir / "manifest.json").write_text(json.dumps(data))


def _result(run_dir: Path, job_id: str, status: str, value: object) -> None:
    path = log_paths(JobFiles(run_dir).folder, job_id).result_pickle
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    cloudpickle_dump((status, value), tmp)
    tmp.rename(path)  # as submitit does: a new file, never rewritten in place


def _job(run_dir: Path, job_id: str = "7") -> SlurmJob:
    job = SlurmExecutor(Resources(gpus=0)).attach(job_id, run_dir)
    assert isinstance(job, SlurmJob)
    return job


def _squeue(bin_dir: Path, line: str) -> None:
    (bin_dir / "squeue.out").write_text(line + "\n")


@pytest.mark.parametrize(
    ("detail", "killed"),
    [
        (KILLED, True),
        ("ProgramFailed: sh exited with status 143: Terminated", True),
        ("ProgramFailed: python exited with status -9", True),
        ("ProgramFailed: python exited with status 137", True),
        ("ProgramFailed: python exited with status 1: ValueError", False),
        ("ProgramFailed: python exited with status -11", False),  # a segfault is the program's own
        ("ProgramFailed: python exited with status 1430", False),
    ],
)
def test_a_program_killed_by_a_requeues_signal_is_told_apart(detail: str, killed: bool) -> None:
    assert killed_by_signal(detail) is killed


@pytest.mark.parametrize(
    ("state", "attempt", "said"),
    [
        (JobState("7", "PENDING", "squeue", "BeginTime", 1), 0, "requeued"),
        (JobState("7", "REQUEUED", "squeue", "None", 1), 0, "requeued"),
        (JobState("7", "PENDING", "squeue", "BeginTime", 1), None, "requeued"),  # no manifest: still
        (JobState("7", "RUNNING", "squeue", "None", 1), 0, "requeued"),  # running again, a later attempt
        (JobState("7", "COMPLETING", "squeue", "None", 2), 1, "requeued"),
        (JobState("7", "RUNNING", "squeue", "None", 0), 0, "unsure"),  # the instant before the job's end
        (JobState("7", "RUNNING", "squeue", "None", 1), None, "unsure"),  # which attempt stored it?
        (JobState("7", "COMPLETING", "squeue", "None", 0), 0, "unsure"),
        (None, 0, "unsure"),  # squeue does not answer
        (JobState("7", "PENDING", "submitted"), 0, "unsure"),  # not asked about yet
        (JobState("7", "FAILED", "squeue", "NonZeroExitCode", 0), 0, "ended"),
        (JobState("7", "CANCELLED", "squeue", "None", 0), 0, "ended"),
        (JobState("7", "FAILED", "sacct"), 0, "ended"),
        (
            JobState("7", "REQUEUED", "sacct"),
            0,
            "ended",
        ),  # slurmctld forgot it: over, whatever sacct last had
        (JobState("7", "GONE", "none"), 0, "ended"),
    ],
)
def test_slurm_says_whether_a_killed_programs_job_was_requeued(
    state: JobState | None, attempt: int | None, said: str
) -> None:
    assert verdict(state, attempt) == said


def test_the_attempt_that_stored_the_result_is_the_last_one_of_the_job_that_ended(tmp_path: Path) -> None:
    assert attempt_restart(tmp_path, "7") is None  # no manifest
    _manifest(
        tmp_path, _attempt("5", 3), _attempt("7", None), _attempt("7", 1), _attempt("7", 2, ended=False)
    )
    assert attempt_restart(tmp_path, "7") == 1  # restart 2 still runs; another job's attempts do not count
    _manifest(tmp_path, _attempt("7", None))
    assert attempt_restart(tmp_path, "7") == 0  # a first attempt has no SLURM_RESTART_COUNT


def test_a_requeued_jobs_stale_result_is_ignored_and_its_next_result_counts(
    fake_slurm: Path, tmp_path: Path
) -> None:
    _manifest(tmp_path, _attempt("7", None))
    _result(tmp_path, "7", "error", KILLED)
    _squeue(fake_slurm, "7|PENDING|BeginTime|1")  # scontrol requeue: back in the queue, restart 1
    job = _job(tmp_path)
    assert not job.done()  # not failed: SLURM runs it again
    asked = len((fake_slurm / "squeue.calls").read_text().splitlines())
    assert asked == 1  # one fresh squeue, at the result's first sight
    _squeue(fake_slurm, "7|RUNNING|None|1")
    assert not job.done() and not job.done()
    _squeue(fake_slurm, "7|COMPLETED|None|1")
    _result(tmp_path, "7", "success", {"epochs": 2})  # the requeued attempt's own result
    assert job.done()
    assert job.outcome().status == "success"


def test_a_requeued_job_that_ends_without_a_result_of_its_own_is_lost_not_failed(
    fake_slurm: Path, tmp_path: Path
) -> None:
    _manifest(tmp_path, _attempt("7", None))
    _result(tmp_path, "7", "error", KILLED)
    _squeue(fake_slurm, "7|RUNNING|None|1")  # already running again when first seen
    job = _job(tmp_path)
    assert not job.done()
    _squeue(fake_slurm, "7|CANCELLED|None|1")  # scancel'd in its second attempt
    job._states.get("7", fresh=True)
    assert job.done()
    outcome = job.outcome()
    assert outcome.status == "lost" and "ended CANCELLED without a result" in outcome.detail


def test_a_program_killed_by_a_signal_without_a_requeue_fails_once_slurm_says_the_job_ended(
    fake_slurm: Path, tmp_path: Path
) -> None:
    _manifest(tmp_path, _attempt("7", None))
    _result(tmp_path, "7", "error", KILLED)
    _squeue(fake_slurm, "7|COMPLETING|None|0")  # ending: SLURM cannot tell yet
    job = _job(tmp_path)
    assert not job.done()
    _squeue(fake_slurm, "7|FAILED|NonZeroExitCode|0")
    job._states.get("7", fresh=True)  # the poll's next query (brought forward to FAST_S)
    assert job.done()
    outcome = job.outcome()
    assert outcome.status == "error" and "exited with status -15" in outcome.detail


def test_any_other_result_ends_the_job_without_asking_slurm(fake_slurm: Path, tmp_path: Path) -> None:
    _result(tmp_path, "7", "error", "ProgramFailed: python exited with status 1: ValueError")
    job = _job(tmp_path)
    assert job.done() and job.outcome().status == "error"
    assert not (fake_slurm / "squeue.calls").exists()


class _Trial:
    number = 4


def test_a_requeue_slurm_did_on_its_own_gets_one_line(fake_slurm: Path, tmp_path: Path) -> None:
    job = SlurmJob("7", JobFiles(tmp_path).folder, SlurmExecutor(Resources(gpus=0)).states, submitted=True)
    item = Watched(_Trial(), job, {"epochs": 5}, tmp_path)  # type: ignore[arg-type]
    assert item.requeue_lines() == []  # just submitted: restart 0, not asked yet
    _squeue(fake_slurm, "7|RUNNING|None|0")
    job._states.get("7", fresh=True)
    assert item.requeue_lines() == []
    _squeue(fake_slurm, "7|PENDING|BeginTime|1")  # an admin's scontrol requeue
    job._states.get("7", fresh=True)
    assert item.requeue_lines() == [
        "trial 4 job 7 requeued by SLURM (restart 1), not by its own checkpoint: an admin's `scontrol "
        "requeue` or a node failure; it runs again, resuming from its checkpoint"
    ]
    assert item.requeue_lines() == []  # said once
    # a requeue at a time limit, recorded by the job's checkpoint: said from the record, once
    record = requeues.Requeue("7", 1, 2, "time limit", 0.0)
    (tmp_path / requeues.FILE).write_text(json.dumps(dataclasses.asdict(record)) + "\n")
    _squeue(fake_slurm, "7|PENDING|BeginTime|2")
    job._states.get("7", fresh=True)
    lines = item.requeue_lines()
    assert len(lines) == 1 and lines[0].startswith("trial 4 job 7 requeued (time limit) after epoch 2/5")


def test_a_reattached_jobs_earlier_requeues_are_not_said_again(fake_slurm: Path, tmp_path: Path) -> None:
    job = _job(tmp_path)
    item = Watched(_Trial(), job, {"epochs": 5}, tmp_path)  # type: ignore[arg-type]
    _squeue(fake_slurm, "7|RUNNING|None|3")
    assert item.requeue_lines() == []  # the count seen first is where it starts
    _squeue(fake_slurm, "7|RUNNING|None|4")
    job._states.get("7", fresh=True)
    assert [line.split(",")[0] for line in item.requeue_lines()] == [
        "trial 4 job 7 requeued by SLURM (restart 4)"
    ]
