"""A launcher on a real cluster that misbehaves (scripts/slurm-dev-cluster.sh): an sbatch that times out
after slurmctld took the job, a submission limit, a controller restart. Each study completes in one
launch, every trial runs once.

Each test that changes the cluster (a limit, a stopped slurmctld) puts it back in a `finally`.
"""

# ruff: noqa: F811 (the tests take the imported fixtures as arguments)
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import deadline
from tests.sweep.conftest import ROOT, program_study, sweep_cmd, wait_for
from tests.sweep.executors.test_slurm import (  # noqa: F401 (slurm_cluster, study_jobs: fixtures)
    SCRIPT,
    now_for_sacct,
    sacct_jobs,
    slurm_cluster,
    stored_trials,
    study_jobs,
)

pytestmark = pytest.mark.slow

# Logs `epochs` epochs, `seconds` apart.
PROGRAM = """\
import json, os, sys, time
epochs, seconds, lr = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
for epoch in range(1, epochs + 1):
    time.sleep(seconds)
    with open(os.path.join(os.environ["SWEEP_RUN_DIR"], "metrics.jsonl"), "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "score": lr * epoch}) + "\\n")
"""


def _study(folder: Path, name: str, *, epochs: int, seconds: float, lrs: list[float]) -> Path:
    (folder / "prog.py").write_text(PROGRAM)
    args = [str(folder / "prog.py"), str(epochs), str(seconds), "{lr}"]
    return program_study(folder, name, args, epochs=epochs, lrs=lrs)


def _launch(
    path: Path,
    results: Path,
    *,
    parallel: int,
    env: dict[str, str] | None = None,
    stdout: IO[str] | None = None,
) -> subprocess.Popen[str]:
    """`sweep launch` on SLURM, its output (stderr too) to a pipe or to `stdout`."""
    return subprocess.Popen(
        sweep_cmd("launch", "--study", str(path), "--executor", "slurm", "--parallel", str(parallel),
                  "--results-dir", str(results)),
        cwd=ROOT, stdout=stdout or subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env or dict(os.environ),
    )  # fmt: skip


def _each_ran_once(results: Path, name: str, count: int, since: str, out: str) -> None:
    trials = stored_trials(results, name)
    assert [t.state.name for t in trials] == ["COMPLETE"] * count, out
    assert [t.user_attrs.get("submissions") for t in trials] == [1] * count, out  # nothing counted twice
    # a job the outage kept from starting its trial (its srun could not reach the controller) is one
    # more job of that trial, said by the launcher and not counted as a submission
    restarts = [line.split()[1] for line in out.splitlines() if "did not start the trial" in line]
    expected = sorted([f"sweep-{name}-{t.number}" for t in trials] + [f"sweep-{name}-{n}" for n in restarts])

    def accounted() -> list[str]:  # slurmdbd learns of a job a second or so late
        jobs = sacct_jobs(since, "JobName")
        return sorted(job["JobName"] for job in jobs if job["JobName"].startswith(f"sweep-{name}-"))

    wait_for(lambda: set(accounted()) == set(expected), timeout=deadline(60), what="sacct to list the jobs")
    assert accounted() == expected  # one job each: none submitted twice

    def queued() -> list[str]:
        listed = subprocess.run(
            ["squeue", "-h", "-o", "%j %T"], capture_output=True, text=True, timeout=deadline(30)
        )
        jobs = [line.split() for line in listed.stdout.splitlines() if line.startswith(f"sweep-{name}-")]
        return [job for job, state in jobs if state != "COMPLETING"]

    # no job of the study is left to run or train. A job whose step ended while slurmctld was down
    # stays COMPLETING until the step's slurmstepd tells slurmctld (it retries each 60 s): it trains
    # nothing, and is not waited for (the study_jobs fixture resumes a node drained for it)
    wait_for(lambda: not queued(), timeout=deadline(60), what="the study's jobs to leave squeue")


def test_an_sbatch_that_times_out_after_submitting_runs_the_trial_once(
    tmp_path: Path, study_jobs: list[str]
) -> None:
    study_jobs.append("sbtimeout")
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    real = subprocess.run(["sh", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    # the first call submits, then answers as a controller too busy to reply in time would
    (wrappers / "sbatch").write_text(
        f'#!/bin/sh\n{real} "$@" || exit $?\n'
        f"if [ ! -e {wrappers}/timed-out ]; then touch {wrappers}/timed-out\n"
        "  echo 'sbatch: error: Batch job submission failed: Socket timed out on send/recv operation' >&2\n"
        "  exit 1\nfi\n"
    )
    (wrappers / "sbatch").chmod(0o755)
    path = _study(tmp_path, "sbtimeout", epochs=2, seconds=0.5, lrs=[0.1, 0.2])
    since = now_for_sacct()
    results = tmp_path / "results"
    env = {**os.environ, "PATH": f"{wrappers}:{os.environ['PATH']}"}
    launcher = _launch(path, results, parallel=2, env=env)
    out, _ = launcher.communicate(timeout=deadline(300))
    assert launcher.returncode == 0, out
    assert (wrappers / "timed-out").exists()  # the timeout happened
    _each_ran_once(results, "sbtimeout", 2, since, out)


def _sacctmgr(*args: str) -> None:
    subprocess.run(["sacctmgr", "-i", *args], check=True, capture_output=True, timeout=deadline(60))


@pytest.mark.cluster_fault
def test_a_submission_limit_holds_trials_and_the_study_completes_in_one_launch(
    tmp_path: Path, study_jobs: list[str]
) -> None:
    study_jobs.append("qlimit")
    path = _study(tmp_path, "qlimit", epochs=2, seconds=1.0, lrs=[0.1, 0.2, 0.3, 0.4, 0.5])
    since = now_for_sacct()
    results = tmp_path / "results"
    _sacctmgr("modify", "user", "root", "set", "MaxSubmitJobs=2")
    try:
        launcher = _launch(path, results, parallel=4)
        out, _ = launcher.communicate(timeout=deadline(600))
    finally:
        _sacctmgr("modify", "user", "root", "set", "MaxSubmitJobs=-1")
    assert launcher.returncode == 0, out
    assert "waiting: submission limit (AssocMaxSubmitJobLimit)" in out, out
    assert "submitted after the submission limit let it" in out
    _each_ran_once(results, "qlimit", 5, since, out)


# Epoch 1 at once, the rest once the test says `go`: the trial of lr 0.1 slowly (pruned meanwhile), the
# others at once. Started again, it goes on after its last epoch.
GATED = """\
import json, os, pathlib, sys, time
gate, lr = pathlib.Path(sys.argv[1]), float(sys.argv[2])
metrics = pathlib.Path(os.environ["SWEEP_RUN_DIR"]) / "metrics.jsonl"
done = len(metrics.read_text().splitlines()) if metrics.exists() else 0
for epoch in range(done + 1, 9):
    if epoch > 1:
        while not (gate / "go").exists():
            time.sleep(0.05)
        time.sleep(3.0 if lr < 0.2 else 0.05)
    with open(metrics, "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "score": lr * epoch}) + "\\n")
"""


@pytest.mark.cluster_fault
def test_the_launcher_rides_out_a_controller_restart_recording_ends_and_carrying_out_a_prune(
    tmp_path: Path, study_jobs: list[str]
) -> None:
    """slurmctld stopped while trials 0 (lr 0.4) and 1 (lr 0.1) train: trial 0 ends, trial 2's sbatch
    fails and is held, and trial 1 falls below the median and is pruned, all while the controller is
    away; its scancel is sent once it is back, and the study completes, each configuration once."""
    name = "ctlrestart"
    study_jobs.append(name)
    gate = tmp_path / "gate"
    gate.mkdir()
    (tmp_path / "gated.py").write_text(GATED)
    path = program_study(
        tmp_path, name, [str(tmp_path / "gated.py"), str(gate), "{lr}"], epochs=8, lrs=[0.4, 0.1, 0.5],
        extra='pruner = "median"\npruner_startup_trials = 1\n',
    )  # fmt: skip
    since = now_for_sacct()
    results, log = tmp_path / "results", tmp_path / "launch.out"
    runs = results / "runs" / name
    with log.open("w") as handle:
        launcher = _launch(path, results, parallel=2, stdout=handle)
    try:  # both first trials train (their srun steps made): the controller goes under them
        wait_for(
            lambda: all((runs / n / "metrics.jsonl").exists() for n in ("0", "1")),
            timeout=deadline(120),
            what="trials 0 and 1 to log their first epoch",
        )
        subprocess.run(["bash", str(SCRIPT), "stop-controller"], check=True, timeout=deadline(60))
        (gate / "go").touch()
        for what in (  # each while the controller is away
            "trial 0 complete",  # its end read from its run dir
            "slurm: sbatch failed (",  # trial 2's submission held
            "trial 1 pruned",
            "is cancelled once it does",  # the prune's scancel kept for later, not blocking
        ):
            wait_for(lambda w=what: w in log.read_text(), timeout=deadline(120), what=what)
    finally:
        subprocess.run(["bash", str(SCRIPT), "start-controller"], check=True, timeout=deadline(120))
    launcher.wait(timeout=deadline(300))
    out = log.read_text()
    assert launcher.returncode == 0, out
    trials = stored_trials(results, name)
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "COMPLETE"], out
    assert [t.user_attrs.get("submissions") for t in trials] == [1, 1, 1], out  # nothing counted twice
    # trial 0's end was recorded within a poll of its last epoch, with the controller away
    last_epoch = (runs / "0" / "metrics.jsonl").stat().st_mtime
    assert trials[0].datetime_complete is not None
    assert trials[0].datetime_complete.timestamp() - last_epoch < 5, out
    assert out.count("slurm: sbatch failed (") == out.count("slurm: sbatch answers again after") == 1, out
    job = str(trials[1].user_attrs["job_id"])
    assert f"slurm: the controller answers again; job {job} cancelled" in out, out
    wait_for(lambda: job not in _running_ids(), timeout=deadline(60), what="the pruned trial's job to go")
    assert len((runs / "1" / "metrics.jsonl").read_text().splitlines()) < 8  # stopped before its end

    def accounted() -> list[str]:  # slurmdbd learns of a job a second or so late
        jobs = sacct_jobs(since, "JobName")
        return sorted(job["JobName"] for job in jobs if job["JobName"].startswith(f"sweep-{name}-"))

    expected = [f"sweep-{name}-{n}" for n in range(3)]
    wait_for(lambda: accounted() == expected, timeout=deadline(60), what="sacct to list one job a trial")


def _running_ids() -> list[str]:
    """The ids of the jobs squeue lists PENDING or RUNNING (a COMPLETING one trains no more)."""
    listed = subprocess.run(
        ["squeue", "-h", "-t", "PENDING,RUNNING", "-o", "%i"],
        capture_output=True,
        text=True,
        timeout=deadline(30),
    )
    return listed.stdout.split()


def test_a_time_limit_shorter_than_an_epoch_fails_the_trial_after_two_attempts(
    tmp_path: Path, study_jobs: list[str]
) -> None:
    """Fault: submitit requeued such a job silently every ~20 s, up to 20 times a job and 3 submissions."""
    study_jobs.append("tlimit")
    # one epoch takes 300 s, the limit is 2 min: SLURM signals the end (90 s before it) 30-60 s into
    # each attempt (slurmctld checks time limits every 30 s). Not 1 min: the signal would then come at
    # any time from the job's start, also before submitit's handler is installed, which it kills.
    path = _study(tmp_path, "tlimit", epochs=2, seconds=300.0, lrs=[0.1])
    path.write_text(path.read_text().replace("timeout_min = 10", "timeout_min = 2"))
    results = tmp_path / "results"
    launcher = _launch(path, results, parallel=1)
    out, _ = launcher.communicate(timeout=deadline(600))
    assert launcher.returncode == 1, out  # a failed trial
    assert out.count(" requeued (time limit) before its first epoch; requeue ") == 1, out
    reason = "time limit reached twice without progress (each attempt ended before its first epoch); raise"
    assert f"trial 0 failed: {reason} [resources] timeout_min" in out, out
    (trial,) = stored_trials(results, "tlimit")
    assert trial.state.name == "FAIL" and trial.user_attrs["submissions"] == 1  # not submitted again
