"""A launcher that is polite to slurmctld: one squeue for all its jobs per poll interval, none for a job
just submitted, paced sbatch calls, transient sbatch failures ridden out, submission limits held.

These run against scripts on PATH that stand in for the SLURM commands and log every call (the
`fake_slurm` fixture); the same behaviour on the real dev cluster is in test_slurm.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from submitit.core.utils import FailedJobError

from sweep.errors import SweepError
from sweep.executors import slurm
from sweep.executors.base import SubmitHeld
from sweep.executors.slurm import SlurmExecutor
from sweep.executors.slurm_queries import StateCache
from sweep.executors.slurm_submit import SUBMIT_GAP_S, Submitter, adopt, classify
from sweep.study import Resources, load_study
from tests.sweep import fake_slurm
from tests.sweep.conftest import write_study

QOS_REFUSAL = (
    "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission failed: "
    "Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)"
)
DOWN = "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"
TIMED_OUT = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"


def calls(bin_dir: Path, name: str) -> int:
    path = bin_dir / f"{name}.calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_many_jobs_cost_one_squeue_per_poll_interval(fake_slurm: Path, tmp_path: Path) -> None:
    (fake_slurm / "squeue.out").write_text("".join(f"{i}|RUNNING\n" for i in range(1, 11)))
    cache = StateCache(query_every_s=0.5)
    executor = SlurmExecutor(Resources(gpus=0))
    jobs = [executor.attach(str(i), tmp_path / str(i)) for i in range(1, 11)]
    executor.states = cache
    for job in jobs:
        job._states = cache  # type: ignore[attr-defined]
    for _ in range(20):  # a launcher polling its ten jobs twenty times
        assert not any(job.done() for job in jobs)
    assert calls(fake_slurm, "squeue") == 1 and cache.queries == 1
    time.sleep(0.6)
    assert not any(job.done() for job in jobs)
    assert calls(fake_slurm, "squeue") == 2  # the next interval: one call for all ten again
    assert "1,10,2,3,4,5,6,7,8,9" in (fake_slurm / "squeue.calls").read_text().splitlines()[-1]


def test_a_job_just_submitted_is_not_asked_about_until_the_next_query(fake_slurm: Path) -> None:
    cache = StateCache(query_every_s=30)
    (fake_slurm / "squeue.out").write_text("1|RUNNING\n")
    assert cache.get("1").state == "RUNNING"
    for new in ("2", "3", "4"):  # a wave of submissions: no query for each new id
        state = cache.get(new)
        assert (state.state, state.live) == ("PENDING", True)
    assert calls(fake_slurm, "squeue") == 1
    cache.soon()  # a submission brings the next query forward (FAST_S), not to now
    cache.get("4")
    assert calls(fake_slurm, "squeue") == 1
    cache.get("4", fresh=True)
    assert calls(fake_slurm, "squeue") == 2
    assert "1,2,3,4" in (fake_slurm / "squeue.calls").read_text().splitlines()[-1]


def test_a_pruned_trials_job_is_cancelled_without_waiting_on_squeue(fake_slurm: Path, tmp_path: Path) -> None:
    executor = SlurmExecutor(Resources(gpus=0))
    job = executor.attach("7", tmp_path)
    job.stop_soon()  # one scancel, and no squeue to wait on the job's end (a time bound flaked under load)
    assert calls(fake_slurm, "scancel") == 1 and calls(fake_slurm, "squeue") == 0
    assert "7" not in executor.states.watched


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (QOS_REFUSAL, "limit"),
        ("sbatch: error: AssocMaxSubmitJobLimit\nsbatch: error: Batch job submission failed", "limit"),
        ("sbatch: error: MaxJobCount reached", "limit"),
        (DOWN, "transient"),
        (TIMED_OUT, "transient"),
        ("sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying", "transient"),
        ("sbatch: error: invalid partition specified: gpu", "refused"),
        ("sbatch: error: Requested node configuration is not available", "refused"),
    ],
)
def test_sbatch_failures_are_told_apart(message: str, kind: str) -> None:
    assert classify(message) == kind


class FlakySbatch:
    """A submitit executor stand-in whose sbatch fails with the given messages first, then answers."""

    def __init__(self, failures: list[str], folder: Path) -> None:
        self.failures = failures
        self.folder = folder
        self.calls: list[float] = []

    def submit(self, fn: Any, *args: Any) -> Any:
        self.calls.append(time.monotonic())
        if self.failures:
            raise FailedJobError(self.failures.pop(0))
        return type("Job", (), {"job_id": str(100 + len(self.calls))})()


def test_an_outage_is_ridden_out_with_one_line_at_its_start_and_one_at_its_end(
    fake_slurm: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    slept: list[float] = []
    submitter = Submitter(3600, lines.append, sleep=slept.append)
    sbatch = FlakySbatch([DOWN, DOWN, DOWN], tmp_path)
    job_id = submitter.submit(sbatch, None, (), "sweep-s-0", what="for run 0")  # type: ignore[arg-type]
    assert job_id == "104" and len(sbatch.calls) == 4
    assert slept == [2.0, 4.0, 8.0]  # back-off
    assert len(lines) == 2
    assert lines[0].startswith("slurm: sbatch failed (sbatch: error: Batch job submission failed: Unable")
    assert "up to 60 min ([waits] scheduler_outage_min)" in lines[0]
    assert lines[1].startswith("slurm: sbatch answers again after")


def test_an_outage_longer_than_allowed_ends_the_launch_with_one_line(
    fake_slurm: Path, tmp_path: Path
) -> None:
    submitter = Submitter(0.0, lambda _: None, sleep=lambda _: None)
    with pytest.raises(SweepError, match=r"sbatch has failed for 0 min .*raise \[waits\] scheduler_outage"):
        submitter.submit(FlakySbatch([DOWN] * 3, tmp_path), None, (), "n", what="w")  # type: ignore[arg-type]


def test_a_submission_limit_is_held_and_a_bad_job_refused(fake_slurm: Path, tmp_path: Path) -> None:
    submitter = Submitter(3600, lambda _: None, sleep=lambda _: None)
    with pytest.raises(SubmitHeld, match="^QOSMaxSubmitJobPerUserLimit$"):
        submitter.submit(FlakySbatch([QOS_REFUSAL], tmp_path), None, (), "n", what="w")  # type: ignore[arg-type]
    with pytest.raises(
        SweepError, match="^sbatch refused the job for run 3: sbatch: error: invalid partition"
    ):
        submitter.submit(
            FlakySbatch(["sbatch: error: invalid partition specified: gpu"], tmp_path),  # type: ignore[arg-type]
            None, (), "n", what="for run 3",
        )  # fmt: skip


def test_sbatch_calls_are_paced(fake_slurm: Path, tmp_path: Path) -> None:
    submitter = Submitter(3600, lambda _: None)
    sbatch = FlakySbatch([], tmp_path)
    for _ in range(6):
        submitter.submit(sbatch, None, (), "n", what="w")  # type: ignore[arg-type]
    gaps = [b - a for a, b in zip(sbatch.calls, sbatch.calls[1:], strict=False)]
    assert min(gaps) >= SUBMIT_GAP_S * 0.95  # never more than 4 a second


def test_a_job_sbatch_took_before_it_timed_out_is_adopted(fake_slurm: Path, tmp_path: Path) -> None:
    folder = tmp_path / "submitit"
    folder.mkdir()
    (folder / "41_submitted.pkl").write_bytes(b"an earlier job of this run")
    waiting = folder / ("ab" * 16 + ".pkl")  # submitit's pickle under its temporary name
    waiting.write_bytes(b"the function")
    (fake_slurm / "squeue.out").write_text("41\n57\n")  # 41 is known; 57 is the job sbatch took
    lines: list[str] = []
    submitter = Submitter(3600, lines.append, sleep=lambda _: None)
    job_id = submitter.submit(FlakySbatch([TIMED_OUT], folder), None, (), "sweep-s-3", what="w")  # type: ignore[arg-type]
    assert job_id == "57"
    assert (folder / "57_submitted.pkl").read_bytes() == b"the function" and not waiting.exists()
    assert "-n sweep-s-3" in (fake_slurm / "squeue.calls").read_text()
    assert lines == []  # adopted at once: no outage
    assert adopt(folder, "sweep-s-3") is None  # nothing left to adopt: no new job, no pickle


SRUN_DOWN = "srun: error: Unable to confirm allocation for job 7: Unable to contact slurm controller"


@pytest.mark.parametrize("stderr", [f"{SRUN_DOWN}\nsrun: Check SLURM_JOB_ID environment variable.\n", ""])
def test_a_job_whose_srun_could_not_reach_the_controller_did_not_start_the_trial(
    fake_slurm: Path, tmp_path: Path, stderr: str
) -> None:
    (fake_slurm / "squeue.out").write_text("7|COMPLETED|None\n")  # the batch script ended; srun never ran
    job = SlurmExecutor(Resources(gpus=0)).attach("7", tmp_path)
    folder = tmp_path / "submitit"
    folder.mkdir()
    (folder / "7_0_log.err").write_text(stderr)
    assert job.done()
    outcome = job.outcome()
    assert outcome.status == "lost"
    assert outcome.outage == bool(stderr)  # only srun's own outage line says so: anything else is counted
    assert (outcome.detail == SRUN_DOWN) if stderr else ("ended COMPLETED without a result" in outcome.detail)


def test_a_cancel_waits_for_its_job_with_one_squeue_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 34: a job's cancel asked squeue every 0.05 s until the job went (KillWait: 30 s by
    default); it now asks once a second, and returns within a second of the job's going."""
    bin_dir = fake_slurm.install(tmp_path / "bin", monkeypatch, gone_after_s=2.0)
    job = SlurmExecutor(Resources(gpus=0)).attach("7", tmp_path / "run")
    job.cancel()
    (scancel,) = fake_slurm.call_times(bin_dir, "scancel")
    squeue = fake_slurm.call_times(bin_dir, "squeue")
    assert 2 <= len(squeue) <= 4 and fake_slurm.most_in_one_second(squeue) == 1
    assert squeue[-1] - scancel < 2.0 + 1.5  # the last call saw it gone
    assert not job.state().live  # type: ignore[attr-defined]


def test_a_re_attached_job_is_described_as_slurm_says_not_as_pending(
    fake_slurm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 34: a launcher taking over trials said `re-attached  job N (slurm PENDING)` of jobs that
    were RUNNING or long FAILED: the cache had not asked about them yet and gave a new job's default."""
    (fake_slurm / "sacct.out").write_text("3|FAILED\n")  # long ended: squeue forgot it, sacct has it
    executor = SlurmExecutor(Resources(gpus=0))
    monkeypatch.setattr(slurm, "WAIT_QUERY_S", 0.0)
    described = []
    for job_id, listed in (("1", "1"), ("2", "12"), ("3", "12")):  # what squeue -j lists of those asked
        (fake_slurm / "squeue.out").write_text("".join(f"{job}|RUNNING|None\n" for job in listed))
        described.append(executor.attach(job_id, tmp_path / job_id).describe())
    assert described == ["slurm RUNNING", "slurm RUNNING", "slurm FAILED, ended"]
    assert calls(fake_slurm, "squeue") == 3 and calls(fake_slurm, "sacct") == 1
    assert executor.attach("2", tmp_path / "2").describe() == "slurm RUNNING"  # answered: no new query
    assert calls(fake_slurm, "squeue") == 3
    # a take-over of many trials at once: one query a second, the others said unknown, never PENDING
    monkeypatch.setattr(slurm, "WAIT_QUERY_S", 60.0)
    executor.states.forget("1")
    assert executor.attach("1", tmp_path / "1").describe() == "slurm state not asked yet: the next poll asks"
    assert calls(fake_slurm, "squeue") == 3


FLAKY_SBATCH = """#!/bin/sh
echo "$@" >> {bin}/sbatch.calls
if [ ! -e {bin}/sbatch.failed ]; then
    touch {bin}/sbatch.failed
    said="Batch job submission failed: Unable to contact slurm controller (connect failure)"
    echo "sbatch: error: $said" >&2
    exit 1
fi
echo "Submitted batch job 4242"
"""


def test_the_detached_launchers_own_sbatch_is_retried_through_the_submitter(
    fake_slurm: Path, tmp_path: Path
) -> None:
    """The launcher's own job goes through the Submitter a trial's does: a transient failure is
    retried (said in one line, tried again after the back-off's first 2 s), not the end of `sweep launch
    --detach`."""
    from sweep.launcher.detach import _start_slurm  # noqa: PLC0415 (the private step under test)

    (fake_slurm / "sbatch").write_text(FLAKY_SBATCH.format(bin=fake_slurm))
    study = write_study(tmp_path / "d.toml", study={"name": "d", "sampler": "grid"}, space={"lr": [0.1]})
    lines: list[str] = []
    started = _start_slurm(load_study(study), _noop_job, tmp_path / "results", lines.append)  # type: ignore[arg-type]
    assert started.job_id == "4242" and started.kind == "slurm"
    assert started.log.endswith("4242_0_log.out")
    assert (fake_slurm / "sbatch.calls").read_text().count("\n") == 2  # failed once, then taken
    assert len(lines) == 2 and lines[0].startswith("slurm: sbatch failed (sbatch: error: Batch job")
    assert lines[1].startswith("slurm: sbatch answers again after ")


def test_a_refused_launcher_job_is_one_error_naming_the_detached_table(
    fake_slurm: Path, tmp_path: Path
) -> None:
    from sweep.launcher.detach import _start_slurm  # noqa: PLC0415

    (fake_slurm / "sbatch.err").write_text("sbatch: error: invalid partition specified: nope\n")
    (fake_slurm / "sbatch.rc").write_text("1")
    study = write_study(tmp_path / "d.toml", study={"name": "d", "sampler": "grid"}, space={"lr": [0.1]})
    with pytest.raises(SweepError) as err:
        _start_slurm(load_study(study), _noop_job, tmp_path / "results", lambda _: None)  # type: ignore[arg-type]
    assert str(err.value) == (
        f"sbatch refused the job of the launcher ([detached] of {study}): sbatch: error: invalid partition "
        "specified: nope"
    )


def _noop_job() -> None:
    """A stand-in for the launcher's job: submitit pickles it; the fake sbatch never runs it."""
