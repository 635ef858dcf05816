"""The SLURM executor end to end against a real single-node cluster (scripts/slurm-dev-cluster.sh).

The session fixture finds the cluster running, or starts it when asked (CI=true, or
SWEEP_TEST_START_SLURM=1; it needs root and apt-get); otherwise the tests are skipped. Every wait has a
deadline: a hung job fails a test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest

from sweep.executors.slurm import SlurmExecutor
from sweep.executors.slurm_queries import job_states, squeue_states
from sweep.launcher import launch
from sweep.store import storage
from sweep.study import Resources, load_study
from tests.conftest import deadline
from tests.sweep.conftest import (
    ROOT,
    TEST_WAITS_TOML,
    TINY_TRAIN,
    run_sweep,
    sweep_cmd,
    wait_for,
    write_study,
)

SCRIPT = ROOT / "scripts" / "slurm-dev-cluster.sh"
pytestmark = pytest.mark.slow  # every test here runs real jobs on a real cluster
START_TIMEOUT_S = deadline(900)  # a first start installs the Debian packages (about a minute here)
JOB_TIMEOUT_S = deadline(120)  # one short job, from sbatch to its end, on a loaded 2-core machine
# Trains for several seconds: enough epochs left to requeue, prune or kill the launcher mid-run.
LONG_TRAIN: dict[str, Any] = {**TINY_TRAIN, "epochs": 12, "fake_train_size": 480}


def _cluster_status() -> subprocess.CompletedProcess[str] | None:
    """scripts/slurm-dev-cluster.sh status (0: every daemon runs and every node is ready); None: no answer."""
    try:
        return subprocess.run(
            ["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=deadline(60)
        )
    except subprocess.TimeoutExpired:
        return None


def _cluster_up() -> bool:
    done = _cluster_status()
    return done is not None and done.returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A running SLURM: found running, or started with scripts/slurm-dev-cluster.sh.

    A cluster whose daemons all run is never started again here, even with a node not ready: `start`
    wipes the scheduler's state, and under xdist another worker's jobs run on it (the run at 7d8f3a9:
    a worker's first SLURM test found a node not ready, restarted the cluster, and the time-limit
    test's job vanished from SLURM while its program still ran)."""
    done = _cluster_status()
    if done is not None and done.returncode == 0:
        return
    # every daemon runs (status would have said one stopped at once): a node is not ready, or sinfo slow
    if done is None or ": stopped" not in done.stdout:
        _undrain()
        said = "no answer" if done is None else done.stdout
        wait_for(_cluster_up, timeout=deadline(120), what=f"the dev cluster's nodes to be ready:\n{said}")
        return
    # Installing and starting one changes the system (Debian packages, /etc/slurm, daemons): only when
    # asked, as CI does. Otherwise a machine without a cluster skips these tests.
    asked = os.environ.get("CI", "").lower() == "true" or os.environ.get("SWEEP_TEST_START_SLURM") == "1"
    if not asked:
        pytest.skip(
            "no SLURM cluster running; `bash scripts/slurm-dev-cluster.sh start` (root) starts one, "
            "or SWEEP_TEST_START_SLURM=1 lets the tests start it"
        )
    done = subprocess.run(
        ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=START_TIMEOUT_S
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/slurm-dev-cluster.sh start failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture
def study_jobs(slurm_cluster: None) -> Iterator[list[str]]:
    """Names of the studies a test runs; their jobs still queued at the end are cancelled."""
    _undrain()
    names: list[str] = []
    yield names
    listed = subprocess.run(
        ["squeue", "-h", "-o", "%i|%j"], capture_output=True, text=True, timeout=deadline(30)
    )
    leftovers = [
        line.split("|")[0]
        for line in listed.stdout.splitlines()
        if any(line.split("|")[-1].startswith(f"sweep-{name}-") for name in names)
    ]
    if leftovers:
        subprocess.run(["scancel", *leftovers], timeout=deadline(30), check=False)


def _undrain() -> None:
    """Resume the dev nodes if an earlier test's controller restart drained them (a job step whose end
    slurmctld missed is killed late, "Kill task failed", and SLURM drains the node for it) or left
    them down."""
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=deadline(30))
    if "drain" in state.stdout or "down" in state.stdout:
        subprocess.run(
            ["scontrol", "update", "nodename=ALL", "state=resume"], timeout=deadline(30), check=False
        )


def sacct_jobs(since: str, *fields: str) -> list[dict[str, str]]:
    """Jobs submitted since `since` (sacct's time format), one dict of `fields` each (JobID first)."""
    columns = ["JobID", *fields]
    done = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "-o", ",".join(columns)],
        capture_output=True,
        text=True,
        timeout=deadline(30),
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


def _launch_in_background(path: Path, results: Path, log: Path) -> subprocess.Popen[str]:
    """`sweep launch` of the study file on the cluster, as its own process, its output in `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            sweep_cmd("launch", "--study", str(path), "--executor", "slurm", "--results-dir", str(results)),
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


# -- the must-show list ------------------------------------------------------------------------------------


def test_smoke_study_on_slurm_completes_with_job_ids(
    tiny_smoke: Path, tmp_path: Path, study_jobs: list[str]
) -> None:
    study_jobs.append("smoke")
    since = now_for_sacct()
    results = tmp_path / "results"
    done = run_sweep(
        "launch", "--study", str(tiny_smoke), "--executor", "slurm", "--parallel", "2",
        "--results-dir", str(results), timeout=deadline(300),
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
        timeout=deadline(30),
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
        ["scontrol", "show", "job", job.job_id], capture_output=True, text=True, timeout=deadline(30)
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
        timeout=deadline(30),
        what="sacct to record the job's gres/gpu",
    )


def test_pruned_trials_job_leaves_squeue(tmp_path: Path, study_jobs: list[str]) -> None:
    study_jobs.append("prune")
    path = write_study(
        tmp_path / "prune.toml",
        study={"name": "prune", "sampler": "grid"},
        train=LONG_TRAIN,
        space={"lr": [0.1]},
    )
    lines: list[str] = []
    # every value is below 2.0: the trial is pruned at its first reported epoch, its job still running
    launch(
        load_study(str(path)),
        results_dir=tmp_path / "results",
        executor="slurm",
        pruner=optuna.pruners.ThresholdPruner(lower=2.0),
        out=lines.append,
    )
    pruned_at = time.monotonic()
    (trial,) = stored_trials(tmp_path / "results", "prune")
    assert trial.state.name == "PRUNED", lines
    job_id = str(trial.user_attrs["job_id"])
    wait_for(lambda: job_id not in squeue_states([job_id]) or _left_squeue(job_id), timeout=deadline(15),
             what="the pruned trial's job to leave squeue")  # fmt: skip
    print(f"job {job_id} out of squeue {time.monotonic() - pruned_at:.1f} s after the launcher returned")
    assert len(epochs_of(trial.user_attrs["run_dir"])) < LONG_TRAIN["epochs"]  # stopped early
    wait_for(
        lambda: job_states([job_id])[job_id].state == "CANCELLED",
        timeout=deadline(30),
        what="state CANCELLED",
    )


def _left_squeue(job_id: str) -> bool:
    """Whether plain `squeue` (pending, running, completing jobs) no longer lists the job."""
    listed = subprocess.run(
        ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=deadline(30)
    )
    return job_id not in listed.stdout.split()


def test_restarted_launcher_reattaches_to_its_slurm_jobs(
    tmp_path: Path, study_jobs: list[str], sessions: list[subprocess.Popen[str]]
) -> None:
    study_jobs.append("restart")
    since = now_for_sacct()
    path = write_study(
        tmp_path / "restart.toml",
        study={"name": "restart", "sampler": "grid"},
        train=LONG_TRAIN,
        space={"lr": [0.05, 0.02, 0.01]},
    )
    results = tmp_path / "results"
    args = ("launch", "--study", str(path), "--executor", "slurm", "--parallel", "2",
            "--results-dir", str(results))  # fmt: skip
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(sweep_cmd(*args), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)  # fmt: skip
    sessions.append(first)
    wait_for(lambda: log.read_text().count(" submitted ") == 2 and " epoch 1/" in log.read_text(),
             timeout=JOB_TIMEOUT_S, what="two jobs submitted and one training")  # fmt: skip
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=deadline(30))
    lines = log.read_text().splitlines()
    running = [line.split(" job ")[1].split()[0] for line in lines if " submitted " in line]
    assert all(job_states(running)[job_id].live for job_id in running)  # the jobs outlive their launcher
    status = run_sweep("status", "--study", "restart", "--results-dir", str(results))
    assert status.returncode == 0 and status.stdout.count("(slurm RUNNING)") == 2, status.stdout

    again = run_sweep(*args, timeout=deadline(300))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("re-attached") == 2, again.stdout
    trials = stored_trials(results, "restart")
    assert [trial.state.name for trial in trials] == ["COMPLETE"] * 3
    assert sorted(trial.params["lr"] for trial in trials) == [0.01, 0.02, 0.05]  # each point once
    assert all(trial.user_attrs["submissions"] == 1 for trial in trials)
    assert {str(trial.user_attrs["job_id"]) for trial in trials[:2]} == set(running)
    submitted = [job for job in sacct_jobs(since, "JobName") if job["JobName"].startswith("sweep-restart-")]
    assert sorted(job["JobName"] for job in submitted) == [f"sweep-restart-{n}" for n in range(3)]


def test_requeued_job_resumes_from_its_checkpoint(tmp_path: Path, study_jobs: list[str]) -> None:
    study_jobs.append("requeue")
    train = LONG_TRAIN
    path = write_study(
        tmp_path / "requeue.toml",
        study={"name": "requeue", "sampler": "grid"},
        train=train,
        space={"lr": [0.1]},
    )
    results = tmp_path / "results"
    log = tmp_path / "launcher.log"
    launcher = _launch_in_background(path, results, log)
    try:
        run_dir = results / "runs" / "requeue" / "0"
        wait_for(lambda: (run_dir / "metrics.jsonl").exists() and len(epochs_of(run_dir)) >= 1,
                 timeout=JOB_TIMEOUT_S, what="the first epoch")  # fmt: skip
        job_id = log.read_text().split(" job ")[1].split()[0]
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=deadline(30))
        at_requeue = len(epochs_of(run_dir))
        launcher.wait(timeout=deadline(300))
    finally:
        launcher.kill()
    assert launcher.returncode == 0, log.read_text()
    (trial,) = stored_trials(results, "requeue")
    assert trial.state.name == "COMPLETE", log.read_text()
    assert str(trial.user_attrs["job_id"]) == job_id and trial.user_attrs["submissions"] == 1
    epochs = epochs_of(run_dir)
    assert epochs == list(range(1, train["epochs"] + 1)), epochs  # no epoch repeated, none missing
    job_log = (run_dir / "submitit" / f"{job_id}_0_log.out").read_text()
    assert "sweep: restart 1 of this job" in job_log, job_log
    resumed = [line for line in job_log.splitlines() if "resuming at epoch" in line]
    assert resumed and at_requeue < train["epochs"], job_log
    records = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-o", "JobID,State", "-j", job_id],
                             capture_output=True, text=True, timeout=deadline(30)).stdout  # fmt: skip
    assert "REQUEUED" in records, records


def _start_launcher(args: tuple[str, ...], log: Path) -> subprocess.Popen[str]:
    """`sweep launch ARGS` in its own session, its output in `log`."""
    with log.open("w") as out:
        return subprocess.Popen(sweep_cmd("launch", *args), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)  # fmt: skip


def test_cancelled_job_is_resumed_from_its_checkpoint_by_the_next_launch(
    tmp_path: Path, study_jobs: list[str], sessions: list[subprocess.Popen[str]]
) -> None:
    study_jobs.append("gone")
    study = {"name": "gone", "sampler": "grid"}
    path = write_study(tmp_path / "gone.toml", study=study, train=LONG_TRAIN, space={"lr": [0.1]})
    results = tmp_path / "results"
    args = ("--study", str(path), "--executor", "slurm", "--results-dir", str(results))
    first = _start_launcher(args, tmp_path / "first.log")
    sessions.append(first)
    run_dir = results / "runs" / "gone" / "0"
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and len(epochs_of(run_dir)) >= 2,
             timeout=JOB_TIMEOUT_S, what="two epochs")  # fmt: skip
    os.killpg(first.pid, signal.SIGKILL)  # the launcher dies, then its job is cancelled behind its back
    first.wait(timeout=deadline(30))
    job_id = (tmp_path / "first.log").read_text().split(" job ")[1].split()[0]
    subprocess.run(["scancel", job_id], check=True, timeout=deadline(30))
    wait_for(
        lambda: not job_states([job_id])[job_id].live, timeout=deadline(30), what="the cancelled job to end"
    )

    again = run_sweep("launch", *args, timeout=deadline(300))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"re-attached  job {job_id} (slurm CANCELLED, ended)" in again.stdout, again.stdout
    assert f"SLURM job {job_id} ended CANCELLED" in again.stdout or "gone without a result" in again.stdout
    (trial,) = stored_trials(results, "gone")
    assert trial.state.name == "COMPLETE" and trial.user_attrs["submissions"] == 2
    assert str(trial.user_attrs["job_id"]) != job_id
    assert epochs_of(run_dir) == list(range(1, LONG_TRAIN["epochs"] + 1))
    new_log = (run_dir / "submitit" / f"{trial.user_attrs['job_id']}_0_log.out").read_text()
    assert "resuming at epoch" in new_log, new_log


def test_sweep_cancel_stops_the_launcher_and_its_jobs(
    tmp_path: Path, study_jobs: list[str], sessions: list[subprocess.Popen[str]]
) -> None:
    study_jobs.append("stop")
    path = write_study(
        tmp_path / "stop.toml",
        study={"name": "stop", "sampler": "grid"},
        train=LONG_TRAIN,
        space={"lr": [0.1, 0.2]},
    )
    results = tmp_path / "results"
    log = tmp_path / "launcher.log"
    launcher = _start_launcher(
        ("--study", str(path), "--executor", "slurm", "--parallel", "2", "--results-dir", str(results)), log
    )
    sessions.append(launcher)
    wait_for(lambda: log.read_text().count(" submitted ") == 2, timeout=JOB_TIMEOUT_S, what="two jobs")
    done = run_sweep("cancel", "--study", "stop", "--results-dir", str(results), timeout=deadline(120))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stop: 2 running trials cancelled" in done.stdout, done.stdout
    assert launcher.wait(timeout=deadline(30)) is not None  # stopped first: it resubmits nothing
    trials = stored_trials(results, "stop")
    assert [trial.state.name for trial in trials] == ["FAIL", "FAIL"]
    assert all(trial.user_attrs["traceback"] == "cancelled by sweep cancel" for trial in trials)
    job_ids = [str(trial.user_attrs["job_id"]) for trial in trials]
    assert all(_left_squeue(job_id) for job_id in job_ids)
    assert all(trial.user_attrs["submissions"] == 1 for trial in trials)


def test_rendered_sbatch_script_runs_on_the_cluster(tmp_path: Path, study_jobs: list[str]) -> None:
    study_jobs.append("byhand")
    study = {"name": "byhand", "sampler": "grid"}
    path = write_study(tmp_path / "byhand.toml", study=study, space={"lr": [0.1]})
    results = tmp_path / "results"
    rendered = run_sweep("sbatch", "--study", str(path), "--config", "0", "--results-dir", str(results))
    assert rendered.returncode == 0, rendered.stderr
    script = tmp_path / "train.sbatch"
    script.write_text(rendered.stdout)
    submitted = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True,
                               timeout=deadline(30), check=True)  # fmt: skip
    job_id = submitted.stdout.strip().split(";")[0]
    wait_for(lambda: not job_states([job_id])[job_id].live, timeout=JOB_TIMEOUT_S, what="the sbatch job")
    run_dir = results / "runs" / "byhand" / "config0-repeat0"
    assert job_states([job_id])[job_id].state == "COMPLETED", (run_dir / f"slurm-{job_id}.out").read_text()
    assert (run_dir / "result.json").exists() and epochs_of(run_dir) == [1, 2]


# -- a user's own program on the cluster ---------------------------------------------------------------------

# Knows sweep only by its contract: resumes from its own checkpoint in SWEEP_RUN_DIR, logs each epoch.
OWN_PROGRAM = """\
import json, os, pathlib, sys, time
params = json.loads(pathlib.Path(os.environ["SWEEP_PARAMS"]).read_text())
run = pathlib.Path(os.environ["SWEEP_RUN_DIR"])
checkpoint = run / "checkpoint.json"
start = json.loads(checkpoint.read_text())["epoch"] if checkpoint.exists() else 0
print("start", os.environ["SWEEP_RESTART"], "from epoch", start + 1, flush=True)
for epoch in range(start + 1, params["epochs"] + 1):
    time.sleep(params["seconds"])
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "score": params["lr"] * epoch}) + "\\n")
    checkpoint.write_text(json.dumps({"epoch": epoch}))
"""


def _own_program_study(folder: Path, name: str, *, epochs: int, seconds: float, lrs: str) -> Path:
    (folder / "own.py").write_text(OWN_PROGRAM)
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
        f"[train]\nepochs = {epochs}\nseconds = {seconds}\n[space]\nlr = {lrs}\n"
        f"[resources]\ngpus = 0\ncpus = 1\ntimeout_min = 10\n{TEST_WAITS_TOML}"
        f'[program]\ncommand = ["{sys.executable}", "own.py"]\n'
    )
    return path


def test_a_users_program_runs_as_a_grid_on_slurm(tmp_path: Path, study_jobs: list[str]) -> None:
    study_jobs.append("ownslurm")
    path = _own_program_study(tmp_path, "ownslurm", epochs=2, seconds=0.1, lrs="[0.1, 0.2]")
    results = tmp_path / "results"
    done = run_sweep(
        "launch", "--study", str(path), "--executor", "slurm", "--parallel", "2",
        "--results-dir", str(results), timeout=deadline(300),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    trials = stored_trials(results, "ownslurm")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert [t.value for t in trials] == [pytest.approx(0.2), pytest.approx(0.4)]
    assert all(str(t.user_attrs["job_id"]).isdigit() for t in trials)


def test_a_requeued_program_resumes_from_its_own_checkpoint(tmp_path: Path, study_jobs: list[str]) -> None:
    study_jobs.append("ownrequeue")
    epochs = 8
    path = _own_program_study(tmp_path, "ownrequeue", epochs=epochs, seconds=1.0, lrs="[0.1]")
    results = tmp_path / "results"
    log = tmp_path / "launcher.log"
    launcher = _launch_in_background(path, results, log)
    try:
        run_dir = results / "runs" / "ownrequeue" / "0"
        wait_for(lambda: (run_dir / "metrics.jsonl").exists() and len(epochs_of(run_dir)) >= 2,
                 timeout=JOB_TIMEOUT_S, what="two epochs")  # fmt: skip
        job_id = log.read_text().split(" job ")[1].split()[0]
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=deadline(30))
        launcher.wait(timeout=deadline(300))
    finally:
        launcher.kill()
    assert launcher.returncode == 0, log.read_text()
    (trial,) = stored_trials(results, "ownrequeue")
    assert trial.state.name == "COMPLETE", log.read_text()
    assert epochs_of(run_dir) == list(range(1, epochs + 1))  # each epoch once: it resumed, not restarted
    started = [(run_dir / f"program.{n}.out").read_text().split() for n in (0, 1)]
    assert started[0][:2] == ["start", "0"] and started[1][:2] == ["start", "1"]
    assert int(started[1][-1]) > 1  # the second start picked up from its checkpoint


def test_a_job_that_waits_in_the_queue_is_said_once_with_squeues_reason(
    tmp_path: Path, study_jobs: list[str], sessions: list[subprocess.Popen[str]]
) -> None:
    study_jobs.append("waits")
    path = tmp_path / "waits.toml"
    path.write_text(  # --begin in ten minutes: the job waits, squeue's reason BeginTime, using nothing
        '[study]\nname = "waits"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
        '[space]\nlr = [0.1]\n[resources]\ngpus = 0\ncpus = 1\n[resources.slurm]\nbegin = "now+600"\n'
        f'{TEST_WAITS_TOML}[program]\ncommand = ["{sys.executable}", "-c", "pass"]\n'
    )
    results, log = tmp_path / "results", tmp_path / "launcher.log"
    launcher = _launch_in_background(path, results, log)
    sessions.append(launcher)
    said = "trial 0 job {} waits in the queue: BeginTime"
    wait_for(lambda: "waits in the queue" in log.read_text(), timeout=JOB_TIMEOUT_S, what="the wait")
    time.sleep(2)  # several polls later: said once
    (job_id,) = [line.split()[4] for line in log.read_text().splitlines() if " submitted " in line]
    assert [line for line in log.read_text().splitlines() if "waits" in line] == [said.format(job_id)]
    status = run_sweep("status", "--study", "waits", "--results-dir", str(results))
    assert "(slurm PENDING (BeginTime))" in status.stdout, status.stdout
    assert run_sweep("cancel", "--study", "waits", "--results-dir", str(results)).returncode == 0
