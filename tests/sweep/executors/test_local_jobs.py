"""A local job is its whole process tree, in a session of its own: `kill -9` of its id leaves nothing of
it running, and a terminal's Ctrl-C stops the launcher, never its jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sweep import procs
from sweep.executors.job import TrainJob
from sweep.executors.local import LocalExecutor
from sweep.study import Resources
from tests.conftest import deadline, tiny_config
from tests.sweep.conftest import (
    ROOT,
    TINY_TRAIN,
    process_start,
    processes_mentioning,
    sweep_cmd,
    wait_for,
    write_study,
)
from trainer.metrics import read_metrics


def spawn_and_sleep(config: dict[str, Any], run_dir: str) -> None:
    """A job whose task starts a child and sleeps: neither of them dies with the controller by itself.
    Both end at SIGTERM, as sweep's own jobs do (submitit's handler would ignore it in the task, and each
    stop sit out the 5 s grace before its SIGKILL)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", run_dir])
    (Path(run_dir) / "child").write_text(str(child.pid))
    time.sleep(600)


def _epochs(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    return [record.epoch for record in read_metrics(path)] if path.exists() else []


def test_local_jobs_run_in_a_session_of_their_own(no_leftovers: Path) -> None:
    """Fault 03: the terminal's Ctrl-C reached the jobs, which shared the launcher's process group."""
    run_dir = no_leftovers / "run"
    job = LocalExecutor(Resources(gpus=0)).submit(spawn_and_sleep, {}, run_dir)
    wait_for((run_dir / "child").exists, timeout=deadline(60), what="the job to start")
    pid = int(job.job_id)
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid != os.getpgid(0)
    job.cancel()


def test_kill_9_of_the_job_id_stops_the_rest_of_the_job_before_it_is_done(no_leftovers: Path) -> None:
    """Fault 02: `kill -9` of the controller left its task (and the task's children) running."""
    run_dir = no_leftovers / "run"
    job = LocalExecutor(Resources(gpus=0)).submit(spawn_and_sleep, {}, run_dir)
    wait_for((run_dir / "child").exists, timeout=deadline(60), what="the job to start")
    assert len(processes_mentioning(str(run_dir))) == 3  # controller, task, the task's child
    os.kill(int(job.job_id), signal.SIGKILL)  # the user kills "the job" `sweep status` shows
    wait_for(job.done, timeout=deadline(30), what="the job to be done")
    assert processes_mentioning(str(run_dir)) == []  # done means nothing of it runs any more
    outcome = job.outcome()
    assert outcome.status == "lost" and outcome.killed  # by someone's hand: not the job's failure
    assert f"job {job.job_id} was stopped by SIGKILL from outside" in outcome.detail


def die_of_sigkill(config: dict[str, Any], run_dir: str) -> None:
    """A job killed from within, as the out-of-memory killer kills a trainer."""
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_job_whose_trainer_is_killed_is_lost_and_not_taken_for_a_users_kill(no_leftovers: Path) -> None:
    job = LocalExecutor(Resources(gpus=0)).submit(die_of_sigkill, {}, no_leftovers / "run")
    wait_for(job.done, timeout=deadline(60), what="the job to end")
    outcome = job.outcome()
    assert outcome.status == "lost" and not outcome.killed


@pytest.mark.slow
def test_a_trainer_dies_with_its_controller_and_the_job_started_again_runs_each_epoch_once(
    no_leftovers: Path,
) -> None:
    """Fault 02: the trainer outlived a `kill -9` of its controller and trained beside the resubmitted job."""
    run_dir, config = no_leftovers / "run", tiny_config(epochs=6).to_dict()
    executor = LocalExecutor(Resources(gpus=0))
    first = executor.submit(TrainJob(), config, run_dir)
    wait_for(lambda: _epochs(run_dir), timeout=deadline(120), what="the first epoch")
    os.kill(int(first.job_id), signal.SIGKILL)
    # Without asking the job anything: the trainer itself ends with its controller.
    wait_for(
        lambda: processes_mentioning(str(run_dir)) == [], timeout=deadline(20), what="the trainer to end"
    )
    assert len(_epochs(run_dir)) < 6  # it did not train on to the end, unwatched
    assert first.done() and first.outcome().status == "lost"

    again = executor.submit(TrainJob(), config, run_dir)  # what the launcher does with a lost job
    wait_for(again.done, timeout=deadline(180), what="the job started again")
    assert again.outcome().status == "success", again.outcome().detail
    assert _epochs(run_dir) == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_kill_9_of_a_job_id_under_a_launcher_resumes_the_trial_with_each_epoch_once(
    no_leftovers: Path,
) -> None:
    """Fault 02, as a user meets it: the launcher resubmitted while the killed job's trainer ran on, and
    the two trainers wrote one metrics.jsonl (epochs interleaved, '18/12')."""
    study = write_study(
        no_leftovers / "jd.toml", study={"name": "jd", "sampler": "grid"}, space={"lr": [0.05]},
        train={**TINY_TRAIN, "epochs": 8},
    )  # fmt: skip
    results, log = no_leftovers / "results", no_leftovers / "jd.log"
    with log.open("w") as out:
        launcher = subprocess.Popen(
            sweep_cmd("launch", "--study", str(study), "--executor", "local", "--results-dir", str(results)),
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(
            lambda: "epoch 1/8" in log.read_text() or launcher.poll() is not None,
            timeout=deadline(120),
            what="the first epoch",
        )
        job = log.read_text().split("submitted  job ")[1].split()[0]
        run_dir = results / "runs" / "jd" / "0"
        # the controller and its trainer, with their start times: on a busy machine a freed pid can be
        # given to a new process within seconds
        old = {pid: process_start(pid) for pid in processes_mentioning(str(run_dir))}
        os.kill(int(job), signal.SIGKILL)
        wait_for(lambda: "resuming it" in log.read_text(), timeout=deadline(60), what="the resubmission")
        still = [pid for pid, start in old.items() if procs.alive(pid) and process_start(pid) == start]
        assert still == []  # before the job was started again
        assert launcher.wait(timeout=deadline(240)) == 0, log.read_text()
    finally:
        launcher.kill()
    text = log.read_text()
    assert "was killed from outside; resuming it" in text and "trial 0 complete" in text, text
    assert "(best of 8 epochs)" in text and "already reported" not in text
    assert _epochs(run_dir) == list(range(1, 9))


def _lines_until(proc: subprocess.Popen[str], count: int, text: str, *, timeout: float) -> list[str]:
    """The launcher's lines until `count` of them contain `text`."""
    import selectors

    assert proc.stdout is not None
    seen: list[str] = []
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    end = time.monotonic() + timeout
    while time.monotonic() < end and sum(text in line for line in seen) < count:
        if selector.select(timeout=0.5):
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip("\n"))
    assert sum(text in line for line in seen) >= count, f"no {count} lines with {text!r}: {seen}"
    return seen


@pytest.mark.slow
def test_three_ctrl_c_of_a_launcher_leave_its_jobs_training_and_the_next_launch_completes_them(
    no_leftovers: Path,
) -> None:
    """Fault 03: a terminal's Ctrl-C (SIGINT to the launcher's process group) stopped its local jobs too;
    after three, the next launch failed the trials ('3 submissions; giving up')."""
    epochs = 60
    study = write_study(
        no_leftovers / "ci.toml", study={"name": "ci", "sampler": "grid"},
        space={"optimizer": ["sgd", "adam"]}, train={**TINY_TRAIN, "epochs": epochs},
    )  # fmt: skip
    results = no_leftovers / "results"
    launch = ("launch", "--study", str(study), "--executor", "local", "--parallel", "2")
    runs = [results / "runs" / "ci" / str(number) for number in (0, 1)]
    for _ in range(3):
        launcher = subprocess.Popen(
            sweep_cmd(*launch, "--results-dir", str(results)),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job has
        )  # fmt: skip
        try:
            _lines_until(launcher, 2, f"/{epochs}  val_acc", timeout=deadline(120))
            os.killpg(launcher.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
            rest, _ = launcher.communicate(timeout=deadline(60))
        finally:
            launcher.kill()
        assert launcher.returncode == 130
        assert "`sweep launch` again re-attaches live jobs" in rest and "`sweep cancel` stops them" in rest
        assert all(processes_mentioning(str(run_dir)) for run_dir in runs)  # both jobs train on

    last = subprocess.run(
        sweep_cmd(*launch, "--results-dir", str(results)),
        cwd=ROOT, capture_output=True, text=True, timeout=deadline(300),
    )  # fmt: skip
    assert last.returncode == 0, last.stdout + last.stderr
    assert "trial 0 re-attached" in last.stdout and "trial 1 re-attached" in last.stdout
    assert "failed" not in last.stdout and "again" not in last.stdout  # nothing resubmitted
    assert "ci: 2 trials (2 complete)" in last.stdout
    assert all(_epochs(run_dir) == list(range(1, epochs + 1)) for run_dir in runs)
