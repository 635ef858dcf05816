"""Local jobs spread over the machine's GPUs: ids from CUDA_VISIBLE_DEVICES or nvidia-smi (a stand-in
script here: no test machine has a GPU), the least-held GPUs for each new job, re-attached jobs' too."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from sweep.errors import SweepError
from sweep.executors.local import GpuPool, LocalExecutor, job_gpus, machine_gpus
from sweep.study import Resources
from sweep.views.job_states import with_local_states
from sweep.views.trial_row import TrialRow
from tests.conftest import deadline
from tests.sweep.conftest import wait_for


def record_gpus(config: dict[str, Any], run_dir: str) -> None:
    """A local job that writes the GPUs it was given, then runs for `seconds` (or until SIGTERM, as
    sweep's own jobs do: submitit's handler would ignore it, and a cancel wait out the stop grace)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # written whole, then renamed: a test that sees the file reads what the job was given (a test once read
    # the file between its creation and its write, under load)
    partial = Path(run_dir) / "gpus.txt.partial"
    partial.write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    partial.replace(Path(run_dir) / "gpus.txt")
    time.sleep(config["seconds"])


def _given(run_dir: Path) -> str:
    wait_for((run_dir / "gpus.txt").exists, timeout=deadline(60), what=f"the job in {run_dir} to start")
    return (run_dir / "gpus.txt").read_text()


def test_machine_gpus_are_the_launchers_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert machine_gpus() == [2, 3]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert machine_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8a1b,GPU-77c0")  # UUIDs: submitit takes ints only
    assert machine_gpus() == []


def test_machine_gpus_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\n[ "$1" = "--query-gpu=index" ] && printf "0\\n1\\n2\\n"\n')
    smi.chmod(0o755)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert machine_gpus() == [0, 1, 2]


def test_the_pool_gives_the_least_held_gpus_and_frees_them_when_a_job_ends() -> None:
    pool, live = GpuPool([0, 1, 2]), {"a": True, "b": True, "c": True, "d": True}
    for job, want in (("a", [0]), ("b", [1]), ("c", [2]), ("d", [0])):  # the fourth shares
        got = pool.take(1)
        assert got == want
        pool.hold(job, got, lambda job=job: live[job])
    live["b"] = False
    assert pool.take(1) == [1]
    assert pool.take(2) == [1, 2]  # 0 is held twice, 2 once, 1 by none


def test_parallel_local_jobs_get_different_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    executor = LocalExecutor(Resources(gpus=1))
    first = executor.submit(record_gpus, {"seconds": 0}, tmp_path / "first")
    second = executor.submit(record_gpus, {"seconds": 60}, tmp_path / "second")
    assert {_given(tmp_path / "first"), _given(tmp_path / "second")} == {"0", "1"}
    wait_for(first.done, timeout=deadline(60), what="the first job")
    third = executor.submit(record_gpus, {"seconds": 0}, tmp_path / "third")  # takes the freed GPU
    assert _given(tmp_path / "third") == _given(tmp_path / "first")

    # A restarted launcher knows which GPU the running job holds, from its process's environment.
    assert job_gpus(int(second.job_id)) == [int(_given(tmp_path / "second"))]
    again = LocalExecutor(Resources(gpus=1))
    again.attach(second.job_id, tmp_path / "second")
    again.submit(record_gpus, {"seconds": 0}, tmp_path / "fourth")
    assert _given(tmp_path / "fourth") != _given(tmp_path / "second")
    row = TrialRow(1, "RUNNING", {}, 0, 2, None, second.job_id, "local", run_dir=str(tmp_path / "second"))
    assert with_local_states([row])[0].job_state == f"local: running on GPU {_given(tmp_path / 'second')}"
    second.cancel()
    wait_for(third.done, timeout=deadline(60), what="the third job")


def test_more_gpus_per_job_than_the_machine_has_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(SweepError, match=r"\[resources\] gpus = 2, but this machine has 1 GPU"):
        LocalExecutor(Resources(gpus=2))


def test_jobs_without_gpus_see_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    LocalExecutor(Resources(gpus=0)).submit(record_gpus, {"seconds": 0}, tmp_path)
    assert _given(tmp_path) == ""


def record_threads(config: dict[str, Any], run_dir: str) -> None:
    """A local job that writes how many threads torch uses in it."""
    import torch

    (Path(run_dir) / "threads.txt").write_text(str(torch.get_num_threads()))


# each case's job imports torch (2 CPU-s): the fast subset keeps the case of a share of the cores
@pytest.mark.parametrize(
    ("cpus", "parallel"),
    [pytest.param(1, 1, marks=pytest.mark.slow), pytest.param(2, 1, marks=pytest.mark.slow), (4, 2)],
)
def test_a_local_jobs_torch_threads_are_its_cpus_within_its_share_of_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpus: int, parallel: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # this machine's size, wherever the test runs
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the launcher's own setting does not leak into jobs
    executor = LocalExecutor(Resources(gpus=0, cpus=cpus), parallel=parallel)
    job = executor.submit(record_threads, {}, tmp_path)
    wait_for(job.done, timeout=deadline(60), what="the local job")
    assert job.outcome().status == "success", job.outcome().detail
    assert (tmp_path / "threads.txt").read_text() == str(min(cpus, 2 // parallel))
    assert os.environ["OMP_NUM_THREADS"] == "7"  # put back after the job started
