"""A job holds its run dir's lock for its whole life: a second job on the same run dir waits briefly,
then refuses with one clear message instead of writing the run dir beside the first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweep.errors import SweepError
from sweep.executors.files import LOCK_FILE
from sweep.executors.job import TrainJob, hold_run_dir
from sweep.executors.local import LocalExecutor
from sweep.executors.program import ProgramJob, stop_leftovers
from sweep.study.spec import Program, Resources
from tests.conftest import deadline, tiny_config
from tests.sweep.conftest import wait_for
from trainer.metrics import read_metrics
from trainer.paths import RunPaths

HOLD = """\
import sys, time
from pathlib import Path
from sweep.executors.job import hold_run_dir
hold_run_dir(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _hold(run_dir: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding `run_dir`'s lock for `seconds`, once it has printed `held`."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_a_held_run_dir_is_refused_after_the_wait_naming_its_holder(tmp_path: Path) -> None:
    """Fault 02: two jobs on one run dir wrote its files at once."""
    holder = _hold(tmp_path, 60)
    try:
        start = time.monotonic()
        with pytest.raises(SweepError) as refused:
            hold_run_dir(tmp_path, wait_s=1.0)
        assert time.monotonic() - start >= 1.0  # it waited before giving up
        message = str(refused.value)
        assert f"run dir {tmp_path} is in use by another job" in message
        assert f"{LOCK_FILE} is held by pid {holder.pid} on " in message and "sweep cancel" in message
    finally:
        holder.kill()
        holder.wait()


def test_a_job_waits_for_the_lock_of_a_job_that_is_ending(tmp_path: Path) -> None:
    holder = _hold(tmp_path, 1.0)
    start = time.monotonic()
    fd = hold_run_dir(tmp_path, wait_s=deadline(30))
    assert fd is not None and time.monotonic() - start >= 0.5
    assert (tmp_path / LOCK_FILE).read_text() == f"pid {os.getpid()} on {os.uname().nodename}\n"
    os.close(fd)
    holder.wait()


@pytest.mark.slow  # two real training jobs
def test_a_second_local_job_on_a_running_jobs_run_dir_fails_and_the_first_trains_each_epoch_once(
    no_leftovers: Path,
) -> None:
    """Fault 02: a job started on a run dir whose job still ran trained beside it (epochs interleaved)."""
    # the first job waits after epoch 1 (a rung, as the launcher's word would have it) until the second
    # has been refused: it surely still runs then, however slow the machine
    run_dir, config = no_leftovers / "run", tiny_config(epochs=3).to_dict()
    executor = LocalExecutor(Resources(gpus=0))
    first = executor.submit(TrainJob(rung_epochs="1"), config, run_dir)
    wait_for(lambda: (run_dir / "metrics.jsonl").exists(), timeout=deadline(120), what="the first epoch")
    second = executor.submit(TrainJob(lock_wait_s=1.0), config, run_dir)
    wait_for(second.done, timeout=deadline(60), what="the second job")
    outcome = second.outcome()
    assert outcome.status == "error" and f"run dir {run_dir} is in use by another job" in outcome.detail
    assert not first.done()  # still waiting at its rung
    RunPaths(run_dir).rung_word(1, go=True).write_text("go\n")
    wait_for(first.done, timeout=deadline(120), what="the first job")
    assert first.outcome().status == "success"
    assert [record.epoch for record in read_metrics(run_dir / "metrics.jsonl")] == [1, 2, 3]


def test_a_program_keeps_its_run_dir_locked_after_its_job_is_killed(no_leftovers: Path) -> None:
    """A program outlives a SIGKILLed job: no job may start on its run dir until it is stopped."""
    program = Program(
        command=(sys.executable, "-c", "import time; time.sleep(600)"), workdir=str(no_leftovers)
    )
    run_dir = no_leftovers / "runs" / "s" / "0"
    job = LocalExecutor(Resources(gpus=0)).submit(ProgramJob(program, "score"), {}, run_dir)
    wait_for((run_dir / "program.pid").exists, timeout=deadline(60), what="the program to start")
    first_group = (run_dir / "program.pid").read_text()
    task = int((run_dir / LOCK_FILE).read_text().split()[1])  # the job's process, not the program
    os.kill(task, signal.SIGKILL)
    wait_for(job.done, timeout=deadline(30), what="the job to end")  # stops the program too
    os.close(_held(hold_run_dir(run_dir, wait_s=deadline(10))))  # free: nothing of the job runs

    again = LocalExecutor(Resources(gpus=0)).submit(ProgramJob(program, "score"), {}, run_dir)
    wait_for(
        lambda: (run_dir / "program.pid").read_text() != first_group,
        timeout=deadline(60),
        what="the program's second start",
    )
    task = int((run_dir / LOCK_FILE).read_text().split()[1])
    os.kill(task, signal.SIGKILL)  # the program runs on, holding the lock it inherited
    with pytest.raises(SweepError, match="is in use by another job"):
        hold_run_dir(run_dir, wait_s=0.5)
    stop_leftovers(run_dir.absolute())
    os.close(_held(hold_run_dir(run_dir, wait_s=deadline(10))))
    again.cancel()


def _held(fd: int | None) -> int:
    assert fd is not None  # this file system has locks
    return fd


# -- `python -m sweep.executors.job RUN_DIR`: the command of `sweep sbatch` scripts --------------------------


def _job_command(run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweep.executors.job", str(run_dir), *extra],
        capture_output=True, text=True, timeout=deadline(120),
    )  # fmt: skip


@pytest.mark.slow
def test_the_job_command_trains_the_run_dirs_config_and_resumes_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(tiny_config(epochs=2).to_json())
    first = _job_command(run_dir)
    assert first.returncode == 0, first.stderr
    assert [record.epoch for record in read_metrics(run_dir / "metrics.jsonl")] == [1, 2]
    again = _job_command(run_dir)  # submitted again: it resumes, with nothing left to train
    assert again.returncode == 0, again.stderr
    assert f"{run_dir}: already complete (2 epochs); nothing to do" in again.stdout
    assert [record.epoch for record in read_metrics(run_dir / "metrics.jsonl")] == [1, 2]


def test_the_job_command_refuses_a_run_dir_another_job_holds_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(tiny_config().to_json())
    holder = _hold(tmp_path, 60)
    try:
        refused = _job_command(tmp_path, "--lock-wait-s", "0.5")
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: run dir ") and "in use by another job" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and not (tmp_path / "metrics.jsonl").exists()


def test_the_job_command_names_a_missing_config_in_one_line(tmp_path: Path) -> None:
    missing = _job_command(tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == f"error: {tmp_path / 'config.json'}: No such file or directory\n"
