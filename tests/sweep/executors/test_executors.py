"""Executors: debug in process, local as real subprocesses (outcome, cancel, re-attach), slurm options."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sweep._compat import sbatch_text
from sweep.errors import SweepError
from sweep.executors import make_executor, wait_for_end
from sweep.executors.debug import DebugExecutor
from sweep.executors.files import SUBMITIT_DIR
from sweep.executors.local import LocalExecutor
from sweep.executors.slurm import SlurmExecutor, slurm_parameters
from sweep.executors.slurm_queries import GONE, job_states
from sweep.study import Resources
from sweep.views.job_states import with_local_states
from sweep.views.trial_row import TrialRow
from tests.conftest import deadline
from tests.sweep.conftest import ROOT, processes_mentioning, wait_for, write_study


def succeed(config: dict[str, Any], run_dir: str) -> str:
    (Path(run_dir) / "out.txt").write_text(config["text"])
    return config["text"]


def explode(config: dict[str, Any], run_dir: str) -> None:
    raise ValueError(f"bad value {config['text']}")


def sleep(config: dict[str, Any], run_dir: str) -> None:
    # ends at SIGTERM, as sweep's own jobs do (`job.run_dir_held`): submitit's handler would ignore it,
    # and each cancel would sit out the stop grace before its SIGKILL (5 s)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    (Path(run_dir) / "started").write_text("")
    time.sleep(config["seconds"])


def test_debug_runs_in_process_at_submit(tmp_path: Path) -> None:
    job = DebugExecutor().submit(succeed, {"text": "hi"}, tmp_path)
    assert job.done() and job.outcome().status == "success"
    assert (tmp_path / "out.txt").read_text() == "hi"


def test_debug_keeps_the_traceback(tmp_path: Path) -> None:
    outcome = DebugExecutor().submit(explode, {"text": "x"}, tmp_path).outcome()
    assert outcome.status == "error"
    assert "Traceback" in outcome.detail and "ValueError: bad value x" in outcome.detail


def test_debug_job_is_lost_after_a_restart(tmp_path: Path) -> None:
    assert DebugExecutor().attach("debug-1-1", tmp_path).outcome().status == "lost"


def test_local_job_succeeds_in_a_subprocess(tmp_path: Path) -> None:
    job = LocalExecutor(Resources(gpus=0)).submit(succeed, {"text": "hello"}, tmp_path)
    wait_for(job.done, timeout=deadline(60), what="the local job")
    assert job.outcome().status == "success"
    assert (tmp_path / "out.txt").read_text() == "hello"
    assert list((tmp_path / "submitit").glob(f"{job.job_id}_0_log.out"))


def test_local_job_error_has_the_traceback(tmp_path: Path) -> None:
    job = LocalExecutor(Resources(gpus=0)).submit(explode, {"text": "y"}, tmp_path)
    wait_for(job.done, timeout=deadline(60), what="the local job")
    outcome = job.outcome()
    assert outcome.status == "error" and "ValueError: bad value y" in outcome.detail


def test_local_job_is_reattached_by_id_and_cancelled(tmp_path: Path) -> None:
    job = LocalExecutor(Resources(gpus=0)).submit(sleep, {"seconds": 60}, tmp_path)
    wait_for((tmp_path / "started").exists, timeout=deadline(60), what="the job to start")
    again = LocalExecutor(Resources(gpus=0)).attach(job.job_id, tmp_path)  # as a restarted launcher would
    assert not again.done()
    again.cancel()
    assert again.done()
    # the submitting handle learns of the end when its controller's exit reaches it (a moment later)
    wait_for(job.done, timeout=deadline(10), what="the first handle to see the end")
    assert processes_mentioning(str(tmp_path)) == []
    assert again.outcome().status == "lost"


def test_wait_for_end_wakes_when_a_local_job_ends(tmp_path: Path) -> None:
    # Without the job's pidfd the wait would last its full 120 s; the job sleeps 1 s.
    job = LocalExecutor(Resources(gpus=0)).submit(sleep, {"seconds": 1}, tmp_path / "own")
    again = LocalExecutor(Resources(gpus=0)).attach(job.job_id, tmp_path / "own")  # not our child
    for waited in (again, job):
        start = time.monotonic()
        wait_for_end([waited], 120)
        assert time.monotonic() - start < 60
        assert waited.done()
    assert job.outcome().status == "success"


def test_wait_for_end_sleeps_the_pause_for_jobs_without_an_end_fd(tmp_path: Path) -> None:
    job = DebugExecutor().submit(succeed, {"text": "x"}, tmp_path)
    assert job.end_fd() is None
    start = time.monotonic()
    wait_for_end([job], 0.2)
    assert time.monotonic() - start >= 0.2


def test_a_cancelled_local_job_prints_nothing_on_the_launchers_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    job = LocalExecutor(Resources(gpus=0)).submit(sleep, {"seconds": 60}, tmp_path)
    wait_for((tmp_path / "started").exists, timeout=deadline(60), what="the job to start")
    # whatever the controller prints goes to its log, beside submitit's own files
    log = tmp_path / "submitit" / "controller.log"
    assert [os.readlink(f"/proc/{job.job_id}/fd/{fd}") for fd in (1, 2)] == [str(log)] * 2
    job.cancel()
    assert job.done()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    print("after")  # and this process's own output is back on its terminal
    assert capfd.readouterr().out == "after\n"


def test_status_rows_of_local_jobs_say_whether_the_process_runs(tmp_path: Path) -> None:
    job = LocalExecutor(Resources(gpus=0)).submit(sleep, {"seconds": 60}, tmp_path)
    wait_for((tmp_path / "started").exists, timeout=deadline(60), what="the job to start")
    here = f"{socket.gethostname()}:1"

    def row(number: int, state: str = "RUNNING", launcher: str = here) -> TrialRow:
        return TrialRow(
            number, state, {}, 0, 2, None, job.job_id, "local", run_dir=str(tmp_path), launcher=launcher
        )

    rows = [row(0), row(1, state="COMPLETE"), row(2, launcher="elsewhere:7")]
    assert [r.job_state for r in with_local_states(rows)] == ["local: running", None, "local on elsewhere"]
    job.cancel()
    ended = with_local_states(rows)[0].job_state
    assert ended is not None and ended.startswith("local: ended")


def test_local_job_that_never_existed_is_done_and_lost(tmp_path: Path) -> None:
    job = LocalExecutor(Resources(gpus=0)).attach("999999999", tmp_path)
    assert job.done() and job.outcome().status == "lost"


def test_auto_is_local_without_sbatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert make_executor("auto", Resources()).name == "local"
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/sbatch")
    assert make_executor("auto", Resources()).name == "slurm"


def test_unknown_executor_is_an_error() -> None:
    with pytest.raises(SweepError, match="unknown executor 'k8s'"):
        make_executor("k8s", Resources())


def test_local_uses_the_resources_timeout_gpus_and_tasks() -> None:
    assert LocalExecutor(Resources(gpus=2, timeout_min=30, tasks_per_node=2)).parameters == {
        "timeout_min": 30,
        "gpus_per_node": 2,
        "tasks_per_node": 2,
    }
    assert LocalExecutor(Resources()).parameters["timeout_min"] > 24 * 60  # not submitit's 2 minutes


def test_slurm_parameters_from_resources() -> None:
    resources = Resources(
        gpus=1,
        cpus=5,
        mem_gb=16,
        timeout_min=240,
        partition="gpu",
        slurm={"qos": "high", "reservation": "r1"},
    )
    assert slurm_parameters(resources) == {
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": 5,
        "gpus_per_node": 1,
        "mem": "16384MB",
        "time": 240,
        "partition": "gpu",
        "qos": "high",
        "additional_parameters": {"reservation": "r1"},
    }
    sbatch = sbatch_text(command="CMD", folder="/f", **slurm_parameters(resources))
    for line in (
        "--gpus-per-node=1",
        "--cpus-per-task=5",
        "--mem=16384MB",
        "--time=240",
        "--partition=gpu",
        "--qos=high",
        "--reservation=r1",
    ):
        assert f"#SBATCH {line}\n" in sbatch


def test_slurm_cpu_only_asks_no_gpus() -> None:
    assert "gpus_per_node" not in slurm_parameters(Resources(gpus=0, cpus=2))


def test_slurm_without_srun_is_a_sweep_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SweepError, match="executor 'slurm'"):
        SlurmExecutor(Resources()).submit(succeed, {"text": "x"}, tmp_path)


# -- slurm job states, against stand-in squeue/sacct/scancel scripts (the real cluster: test_slurm.py) -------


def test_slurm_states_come_from_squeue_then_sacct(fake_slurm: Path) -> None:
    (fake_slurm / "squeue.out").write_text("11|RUNNING\n12|PENDING\n13|REQUEUED\n14|COMPLETED\n")
    (fake_slurm / "sacct.out").write_text("15|CANCELLED by 0\n15.batch|CANCELLED\n16|OUT_OF_MEMORY\n")
    states = job_states(["11", "12", "13", "14", "15", "16", "17"])
    assert {key: (s.state, s.live) for key, s in states.items()} == {
        "11": ("RUNNING", True),
        "12": ("PENDING", True),
        "13": ("REQUEUED", True),  # `scontrol requeue`: the same id runs again, it is not gone
        "14": ("COMPLETED", False),
        "15": ("CANCELLED", False),
        "16": ("OUT_OF_MEMORY", False),
        "17": (GONE, False),
    }
    assert "15,16,17" in (fake_slurm / "sacct.calls").read_text()  # sacct only for what squeue lacks


def test_squeue_that_knows_none_of_the_jobs(fake_slurm: Path) -> None:
    (fake_slurm / "squeue.err").write_text("slurm_load_jobs error: Invalid job id specified\n")
    (fake_slurm / "squeue.rc").write_text("1")
    assert job_states(["9"])["9"].state == GONE


def test_slurm_job_waits_through_a_requeue_then_ends_lost_with_its_state(
    fake_slurm: Path, tmp_path: Path
) -> None:
    executor = SlurmExecutor(Resources(gpus=0))
    job = executor.attach("21", tmp_path)
    (fake_slurm / "squeue.out").write_text("21|REQUEUED\n")
    assert not job.done() and job.describe() == "slurm REQUEUED"
    executor.states.query_every_s = 0
    (fake_slurm / "squeue.out").write_text("21|NODE_FAIL\n")
    assert job.done()
    outcome = job.outcome()
    assert outcome.status == "lost" and "SLURM job 21 ended NODE_FAIL without a result" in outcome.detail


def test_slurm_job_is_not_done_while_slurm_does_not_answer(fake_slurm: Path, tmp_path: Path) -> None:
    (fake_slurm / "squeue.err").write_text("slurm_load_jobs error: Unable to contact slurm controller\n")
    (fake_slurm / "squeue.rc").write_text("1")
    assert not SlurmExecutor(Resources(gpus=0)).attach("5", tmp_path).done()


def test_launch_with_slurm_and_no_sbatch_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # python, but no SLURM commands
    study = write_study(tmp_path / "s.toml", study={"name": "s", "sampler": "grid"}, space={"lr": [0.1]})
    done = subprocess.run(
        [sys.executable, "-m", "sweep", "launch", "--study", str(study), "--executor", "slurm",
         "--results-dir", str(tmp_path / "r")],
        cwd=ROOT, capture_output=True, text=True, timeout=deadline(60), env=env,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: executor 'slurm' needs the SLURM commands sbatch, squeue")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "sweep.db").exists()  # nothing was touched


def test_slurm_orphan_is_the_newest_live_job_of_the_run_dir(fake_slurm: Path, tmp_path: Path) -> None:
    # a launcher that died between sbatch and storing the id left job 32 running, unrecorded
    folder = tmp_path / "run" / "submitit"
    folder.mkdir(parents=True)
    for job_id in ("30", "32"):
        (folder / f"{job_id}_submission.sh").write_text("#!/bin/bash\n")
    (fake_slurm / "squeue.out").write_text("30|COMPLETED\n32|RUNNING\n")
    executor = SlurmExecutor(Resources(gpus=0))
    assert executor.orphan(tmp_path / "run", after=None) == "32"
    assert executor.orphan(tmp_path / "run", after="30") == "32"
    assert executor.orphan(tmp_path / "run", after="32") is None
    assert executor.orphan(tmp_path / "elsewhere") is None


def test_local_orphan_is_the_live_job_of_the_run_dir(tmp_path: Path) -> None:
    import submitit

    run_dir = tmp_path / "run"
    executor = LocalExecutor(Resources())
    assert executor.orphan(run_dir) is None
    job = submitit.LocalExecutor(folder=run_dir / SUBMITIT_DIR).submit(time.sleep, 60)
    try:
        wait_for(
            lambda: executor.orphan(run_dir) is not None, timeout=deadline(30), what="the job's controller"
        )
        assert executor.orphan(run_dir) == job.job_id
        assert executor.orphan(run_dir, after=job.job_id) is None  # the recorded job is no orphan
        assert executor.orphan(tmp_path / "elsewhere") is None
    finally:
        job.cancel()
    wait_for(lambda: executor.orphan(run_dir) is None, timeout=deadline(30), what="the cancelled job to end")
