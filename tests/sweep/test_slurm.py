"""The SLURM executor end to end against a real single-node cluster (scripts/slurm-dev-cluster.sh).

The session fixture starts the cluster (or finds it running). Without root or apt-get the tests are
skipped, except under CI=true, where they must run. Every wait has a deadline: a hung job fails a test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest

from sweep import storage
from sweep.executors import SlurmExecutor
from sweep.study import Resources
from tests.sweep.conftest import ROOT, TINY_TRAIN, run_sweep, wait_for

SCRIPT = ROOT / "scripts" / "slurm-dev-cluster.sh"
START_TIMEOUT_S = 900  # a first start installs the Debian packages (about a minute here)
JOB_TIMEOUT_S = 120  # one short job, from sbatch to its end, on a loaded 2-core machine
# Trains for several seconds: enough epochs left to requeue, prune or kill the launcher mid-run.
LONG_TRAIN: dict[str, Any] = {**TINY_TRAIN, "epochs": 6, "fake_train_size": 480}


def _cluster_up() -> bool:
    try:
        done = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A running single-node SLURM: found running, or started with scripts/slurm-dev-cluster.sh."""
    if _cluster_up():
        return
    in_ci = os.environ.get("CI", "").lower() == "true"
    can_start = os.geteuid() == 0 and (shutil.which("apt-get") or shutil.which("slurmctld"))
    if not can_start and not in_ci:
        pytest.skip("no SLURM cluster, and starting one needs root and apt-get (under CI=true this fails)")
    done = subprocess.run(
        ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=START_TIMEOUT_S
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/slurm-dev-cluster.sh start failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture
def study_jobs(slurm_cluster: None) -> Iterator[list[str]]:
    """Names of the studies a test runs; their jobs still queued at the end are cancelled."""
    names: list[str] = []
    yield names
    listed = subprocess.run(["squeue", "-h", "-o", "%i|%j"], capture_output=True, text=True, timeout=30)
    leftovers = [
        line.split("|")[0]
        for line in listed.stdout.splitlines()
        if any(line.split("|")[-1].startswith(f"sweep-{name}-") for name in names)
    ]
    if leftovers:
        subprocess.run(["scancel", *leftovers], timeout=30, check=False)


def sacct_jobs(since: str, *fields: str) -> list[dict[str, str]]:
    """Jobs submitted since `since` (sacct's time format), one dict of `fields` each (JobID first)."""
    columns = ["JobID", *fields]
    done = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "-o", ",".join(columns)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [dict(zip(columns, line.split("|"), strict=True)) for line in done.stdout.splitlines()]


def now_for_sacct() -> str:
    return datetime.now().strftime("%Y-%m-%dT%H:%M:%S")


def stored_trials(results: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    url = storage.default_url(results)
    return storage.load_existing(name, storage.open_storage(url, create=False), url=url).get_trials()


def epochs_of(run_dir: str | Path) -> list[int]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines if line.strip()]


def job_env(config: dict[str, Any], run_dir: str) -> dict[str, str]:
    """A job that records what SLURM gave it."""
    keys = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_CPUS_PER_TASK", "SLURM_JOB_PARTITION")
    env = {key: os.environ.get(key, "") for key in keys}
    (Path(run_dir) / "env.json").write_text(json.dumps(env))
    return env


# -- the must-show list ------------------------------------------------------------------------------------


def test_smoke_study_on_slurm_completes_with_job_ids(
    tiny_smoke: Path, tmp_path: Path, study_jobs: list[str]
) -> None:
    study_jobs.append("smoke")
    since = now_for_sacct()
    results = tmp_path / "results"
    done = run_sweep(
        "launch", "--study", str(tiny_smoke), "--executor", "slurm", "--parallel", "2",
        "--results-dir", str(results), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    trials = stored_trials(results, "smoke")
    assert len(trials) == 4
    assert all(trial.state.name == "COMPLETE" for trial in trials)
    job_ids = [str(trial.user_attrs["job_id"]) for trial in trials]
    assert all(job_id.isdigit() for job_id in job_ids) and len(set(job_ids)) == 4

    def accounted() -> dict[str, dict[str, str]]:
        return {job["JobID"]: job for job in sacct_jobs(since, "JobName", "State")}

    # the launcher tells a trial once its result is written; sacct hears of the job's end a moment later
    wait_for(
        lambda: all(accounted().get(job_id, {}).get("State") == "COMPLETED" for job_id in job_ids),
        timeout=30,
        what="sacct to record every job COMPLETED",
    )
    jobs = accounted()
    for trial in trials:
        job = jobs[str(trial.user_attrs["job_id"])]
        assert job["JobName"] == f"sweep-smoke-{trial.number}"
        assert trial.user_attrs["executor"] == "slurm" and trial.user_attrs["submissions"] == 1
        # the job ran the launcher's own interpreter (the project's venv)
        submission = Path(trial.user_attrs["run_dir"]) / "submitit" / f"{job['JobID']}_submission.sh"
        assert f"{sys.executable} -u -m submitit.core._submit" in submission.read_text()


def test_gpu_job_is_scheduled_on_the_fake_gpu(tmp_path: Path, slurm_cluster: None) -> None:
    resources = Resources(gpus=1, cpus=1, mem_gb=0.5, timeout_min=5, partition="debug",
                          slurm={"comment": "sweep-gpu-test"})  # fmt: skip
    job = SlurmExecutor(resources).submit(job_env, {}, tmp_path)
    wait_for(lambda: job.state(fresh=True).state != "PENDING", timeout=JOB_TIMEOUT_S, what="the job to start")
    shown = subprocess.run(
        ["scontrol", "show", "job", job.job_id], capture_output=True, text=True, timeout=30
    ).stdout
    wait_for(job.done, timeout=JOB_TIMEOUT_S, what="the GPU job")
    assert job.outcome().status == "success"
    for field in ("gres/gpu=1", "Partition=debug", "TimeLimit=00:05:00", "mem=512M", "NumCPUs=1"):
        assert field in shown, shown
    assert "Comment=sweep-gpu-test" in shown  # an extra [resources.slurm] key, passed through
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["SLURM_JOB_GPUS"] == "0"
    assert env["SLURM_CPUS_PER_TASK"] == "1" and env["SLURM_JOB_PARTITION"] == "debug"
    since = "now-600"
    wait_for(
        lambda: any(
            j["JobID"] == job.job_id and "gres/gpu=1" in j["AllocTRES"]
            for j in sacct_jobs(since, "AllocTRES")
        ),
        timeout=30,
        what="sacct to record the job's gres/gpu",
    )
