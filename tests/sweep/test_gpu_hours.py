"""GPU-hours attempt by attempt: from sacct on the real SLURM cluster (its fake GPU), from the manifests
of local runs; and the budget that stops a launcher starting trials."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.errors import SweepError
from sweep.gpu_hours import HoursTally, study_hours
from sweep.launcher import launch
from sweep.study import load_study
from tests.conftest import deadline
from tests.sweep.conftest import TINY_TRAIN, run_sweep, wait_for, write_study
from tests.sweep.executors.test_slurm import (
    JOB_TIMEOUT_S,
    LONG_TRAIN,
    _launch_in_background,
    epochs_of,
    slurm_cluster,  # noqa: F401  (a fixture: the cluster is up)
    stored_trials,
    study_jobs,  # noqa: F401  (a fixture: their jobs are cancelled at the end)
)
from trainer.manifest import Attempt

EMPTY = {field.name: None for field in dataclasses.fields(Attempt)}  # a manifest attempt, times only
GPU = {"gpus": 1, "cpus": 1, "timeout_min": 10}  # the dev cluster's one fake GPU (gpu:fake:1)


def _sacct_seconds(job_id: str) -> list[tuple[str, int, str]]:
    """(State, ElapsedRaw, AllocTRES) of each attempt of the job, as sacct itself prints them."""
    done = subprocess.run(
        ["sacct", "-D", "-X", "-n", "-P", "-o", "State,ElapsedRaw,AllocTRES", "-j", job_id],
        capture_output=True, text=True, timeout=deadline(30), check=True,
    )  # fmt: skip
    return [(s, int(e), t) for s, e, t in (line.split("|") for line in done.stdout.splitlines())]


@pytest.mark.slow
def test_gpu_hours_from_sacct_count_a_pruned_and_a_requeued_trial(
    tmp_path: Path,
    study_jobs: list[str],  # noqa: F811  (the fixture imported above)
) -> None:
    study_jobs.append("hours")
    results = tmp_path / "results"

    def study_file(n_trials: int) -> Path:
        return write_study(
            tmp_path / "hours.toml",
            study={"name": "hours", "sampler": "grid", "n_trials": n_trials},
            train=LONG_TRAIN,
            space={"lr": [0.1, 0.05]},
            resources=GPU,
        )

    # Trial 0 is pruned at its first epoch (every value is below 2.0), its job cancelled.
    first = load_study(str(study_file(1)))
    launch(first, results_dir=results, executor="slurm", pruner=optuna.pruners.ThresholdPruner(lower=2.0),
           out=lambda _: None)  # fmt: skip
    # Trial 1 (n_trials may grow between launches) is requeued after its first epoch and completes.
    log = tmp_path / "launcher.log"
    launcher = _launch_in_background(study_file(2), results, log)
    try:
        run_dir = results / "runs" / "hours" / "1"
        wait_for(lambda: (run_dir / "metrics.jsonl").exists() and len(epochs_of(run_dir)) >= 1,
                 timeout=JOB_TIMEOUT_S, what="trial 1's first epoch")  # fmt: skip
        job_id = log.read_text().split("trial 1 submitted  job ")[1].split()[0]
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=deadline(30))
        launcher.wait(timeout=deadline(300))
    finally:
        launcher.kill()
    assert launcher.returncode == 0, log.read_text()
    trials = stored_trials(results, "hours")
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE], log.read_text()

    ended = ("COMPLETED", "CANCELLED", "REQUEUED", "FAILED", "TIMEOUT", "PREEMPTED", "NODE_FAIL")
    for trial in trials:  # a job's result is in before its batch script has ended
        wait_for(lambda t=trial: all(s.split()[0].rstrip("+") in ended for s, _, _ in
                                     _sacct_seconds(str(t.user_attrs["job_id"]))),
                 timeout=deadline(60), what="sacct to say the jobs ended")  # fmt: skip
    hours = study_hours(trials, gpus=1)
    assert all(item.ended for item in hours.trials)
    for trial, item in zip(trials, hours.trials, strict=True):
        printed = _sacct_seconds(str(trial.user_attrs["job_id"]))
        assert all("gres/gpu=1" in tres for _, _, tres in printed), printed
        assert item.source == "sacct" and item.attempts == len(printed)
        assert item.used == pytest.approx(sum(seconds for _, seconds, _ in printed) / 3600), printed
        print(f"trial {trial.number}: sacct {printed} -> {item}")
    pruned, requeued = hours.trials
    assert pruned.used > 0 and pruned.wasted == pruned.used  # a pruned trial is all waste
    states = [state for state, _, _ in _sacct_seconds(str(trials[1].user_attrs["job_id"]))]
    assert requeued.attempts >= 2 and "REQUEUED" in states, states
    assert 0 < hours.wasted < hours.used
    status = run_sweep("status", "--study", "hours", "--results-dir", str(results))
    assert status.returncode == 0, status.stderr
    assert f"GPU-hours: {hours.used:.3f} used, {hours.wasted:.3f} of them wasted" in status.stdout
    assert f"gpu-h {pruned.used:.3f} (wasted {pruned.used:.3f})" in status.stdout


@pytest.mark.slow
def test_a_budget_smaller_than_the_grid_stops_the_launcher_and_a_bigger_one_continues(
    tmp_path: Path,
    study_jobs: list[str],  # noqa: F811  (the fixture imported above)
) -> None:
    study_jobs.append("budget")
    path = write_study(
        tmp_path / "budget.toml",
        study={"name": "budget", "sampler": "grid"},
        train={**TINY_TRAIN, "epochs": 1},
        space={"lr": [0.05, 0.1, 0.2]},
        resources=GPU,
    )
    results = tmp_path / "results"
    args = ("--study", str(path), "--executor", "slurm", "--results-dir", str(results))
    small = run_sweep("launch", *args, "--budget-gpu-hours", "0.0001", timeout=deadline(300))
    assert small.returncode == 0, small.stdout + small.stderr
    (line,) = [line for line in small.stdout.splitlines() if "GPU-hour budget reached" in line]
    assert "starting no new trial" in line and ">= 0.0001" in line
    assert [t.state for t in stored_trials(results, "budget")] == [TrialState.COMPLETE]  # one, not three
    status = run_sweep("status", "--study", "budget", "--results-dir", str(results))
    assert "; budget 0.0001, 0.000 left" in status.stdout, status.stdout

    big = run_sweep("launch", *args, "--budget-gpu-hours", "10", timeout=deadline(300))
    assert big.returncode == 0, big.stdout + big.stderr
    assert "budget reached" not in big.stdout
    assert [t.state for t in stored_trials(results, "budget")] == [TrialState.COMPLETE] * 3
    status = run_sweep("status", "--study", "budget", "--results-dir", str(results))
    used = study_hours(stored_trials(results, "budget"), gpus=1).used
    assert f"; budget 10, {10 - used:.3f} left" in status.stdout, status.stdout


def test_a_budget_on_a_study_without_gpus_is_refused(tmp_path: Path) -> None:
    path = write_study(
        tmp_path / "cpu.toml", study={"sampler": "grid", "budget_gpu_hours": 1.0}, space={"lr": [0.1]}
    )
    with pytest.raises(SweepError, match="key 'budget_gpu_hours' is set but \\[resources\\] gpus is 0"):
        load_study(path)
    spec = load_study(write_study(tmp_path / "cpu2.toml", study={"sampler": "grid"}, space={"lr": [0.1]}))
    with pytest.raises(SweepError, match="--budget-gpu-hours is set but \\[resources\\] gpus is 0"):
        launch(spec, results_dir=tmp_path / "results", executor="debug", budget_gpu_hours=1.0)
    assert not (tmp_path / "results").exists()  # refused before anything is stored


def _run_dir_with_manifest(run_dir: Path, start: datetime, spans: list[tuple[int, int]]) -> Path:
    """`run_dir` with a manifest.json of one attempt per (start, end) span, in seconds after `start`."""
    run_dir.mkdir(exist_ok=True)
    manifest = [
        {**EMPTY, "number": i + 1, "started": (start + timedelta(seconds=a)).isoformat(),
         "ended": (start + timedelta(seconds=b)).isoformat()}
        for i, (a, b) in enumerate(spans)
    ]  # fmt: skip
    (run_dir / "manifest.json").write_text(json.dumps({"attempts": manifest}))
    return run_dir


def test_a_slurm_trial_that_sacct_has_not_recorded_yet_counts_its_manifests_hours(tmp_path: Path) -> None:
    """slurmdbd lags: a job that has just ended may read PENDING with no GPUs, or not at all (and sacct
    may not answer). A budget then took its trial for one that cost nothing and started another."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}", direction="maximize")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    run_dir = _run_dir_with_manifest(tmp_path / "0", start, [(0, 600), (700, 1900)])
    attrs = {"config": 0, "run_dir": str(run_dir), "executor": "slurm", "job_id": "987654321"}  # unknown
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs=attrs))
    (hours,) = study_hours(study.get_trials(), gpus=2).trials
    assert hours.used == pytest.approx((600 + 1200) * 2 / 3600) and hours.source == "manifest"
    assert not hours.ended  # read again later: sacct's own record replaces it once it is there


def test_local_gpu_hours_are_each_attempts_wall_time_times_its_gpus(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = optuna.create_study(storage=storage, study_name="local", direction="maximize")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    spans = {0: [(0, 600), (700, 1900)], 1: [(0, 1800)]}  # trial 0: lost once, resumed; trial 1: pruned
    for number, attempts in spans.items():
        run_dir = _run_dir_with_manifest(tmp_path / str(number), start, attempts)
        (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "epoch_seconds": 1500.0}) + "\n")
        state = TrialState.COMPLETE if number == 0 else TrialState.PRUNED
        study.add_trial(
            optuna.trial.create_trial(
                state=state, value=0.5 if number == 0 else None,
                user_attrs={"config": number, "run_dir": str(run_dir), "executor": "local"},
            )
        )  # fmt: skip
    hours = study_hours(study.get_trials(), gpus=2)
    resumed, pruned = hours.trials
    assert resumed.used == pytest.approx((600 + 1200) * 2 / 3600) and resumed.attempts == 2
    assert resumed.wasted == pytest.approx((1800 - 1500) * 2 / 3600)  # beyond its kept epoch: lost
    assert pruned.used == pytest.approx(1800 * 2 / 3600) and pruned.wasted == pruned.used


def test_a_trial_of_several_nodes_counts_every_nodes_gpus(tmp_path: Path) -> None:
    path = write_study(
        tmp_path / "ddp.toml",
        study={"sampler": "grid"},
        space={"lr": [0.1]},
        resources={"gpus": 4, "nodes": 2, "tasks_per_node": 4},
    )
    resources = load_study(path).resources
    assert (resources.trial_gpus, resources.tasks) == (8, 8)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}", direction="maximize")
    run_dir = _run_dir_with_manifest(tmp_path / "0", datetime(2026, 1, 1, tzinfo=UTC), [(0, 900)])
    attrs = {"config": 0, "run_dir": str(run_dir), "executor": "slurm", "job_id": "987654321"}
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs=attrs))
    (hours,) = study_hours(study.get_trials(), gpus=resources.trial_gpus).trials
    assert hours.used == pytest.approx(900 * 8 / 3600)  # sacct's AllocTRES counts all nodes' GPUs too


def test_a_tally_reads_hours_again_when_a_trial_ends_and_a_final_trials_once(tmp_path: Path) -> None:
    """The launcher's budget and the live view read the hours as the study runs, not on every poll."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}", direction="maximize")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    run_dir = _run_dir_with_manifest(tmp_path / "0", start, [(0, 3600)])
    attrs = {"config": 0, "run_dir": str(run_dir), "executor": "local"}
    trial = study.ask()
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    polite = HoursTally(every_s=3600, min_s=3600)  # the live view's: an end is read at its next due read
    tally = HoursTally(every_s=3600, min_s=0)  # a budget's: an end is read at once
    assert polite.hours(study.get_trials(), gpus=1).used == pytest.approx(1.0)
    assert tally.hours(study.get_trials(), gpus=1).used == pytest.approx(1.0)
    _run_dir_with_manifest(run_dir, start, [(0, 7200)])  # the attempt ran on
    assert tally.hours(study.get_trials(), gpus=1).used == pytest.approx(1.0)  # nothing changed: not read
    study.tell(trial, 0.5)
    assert polite.hours(study.get_trials(), gpus=1).used == pytest.approx(1.0)  # not yet
    (hours,) = tally.hours(study.get_trials(), gpus=1).trials  # it ended: read again, and final now
    assert hours.used == pytest.approx(2.0) and hours.ended
    run_dir.joinpath("manifest.json").unlink()
    assert tally.hours(study.get_trials(), gpus=1).used == pytest.approx(2.0)  # final: never read again


def _attempts(run_dir: Path, start: datetime, spans: list[tuple[int, int | None]]) -> Path:
    """`run_dir` with a manifest.json of one attempt per (start, end) span in seconds after `start`; an
    end of None: the attempt wrote none (killed, or still running)."""
    run_dir.mkdir(exist_ok=True)
    manifest = [
        {**EMPTY, "number": i + 1, "started": (start + timedelta(seconds=a)).isoformat(),
         "ended": None if b is None else (start + timedelta(seconds=b)).isoformat()}
        for i, (a, b) in enumerate(spans)
    ]  # fmt: skip
    (run_dir / "manifest.json").write_text(json.dumps({"attempts": manifest}))
    return run_dir


def _local_trial(study: optuna.Study, run_dir: Path, state: TrialState) -> None:
    attrs = {"config": len(study.trials), "run_dir": str(run_dir), "executor": "local"}
    value = 0.5 if state == TrialState.COMPLETE else None
    study.add_trial(optuna.trial.create_trial(state=state, value=value, user_attrs=attrs))


def test_an_attempt_killed_before_its_end_ran_until_the_next_one_started(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}", direction="maximize")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # killed at some time after its start (no end written), resubmitted at 1000 s, done at 1600 s
    _local_trial(study, _attempts(tmp_path / "0", start, [(0, None), (1000, 1600)]), TrialState.COMPLETE)
    (hours,) = study_hours(study.get_trials(), gpus=2, now=start.timestamp() + 10**6).trials
    assert hours.attempts == 2 and hours.source == "manifest" and hours.ended
    assert hours.used == pytest.approx((1000 + 600) * 2 / 3600)
    assert hours.wasted == pytest.approx(1000 * 2 / 3600)  # no epoch_seconds kept: the attempts but the last


def test_a_last_attempt_without_an_end_runs_until_now_or_until_its_last_write(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}", direction="maximize")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    running = _attempts(tmp_path / "0", start, [(0, 600), (700, None)])  # still running, resumed at 700 s
    _local_trial(study, running, TrialState.RUNNING)
    died = _attempts(tmp_path / "1", start, [(0, 600), (700, None)])  # killed; it last wrote at 1300 s
    (died / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "epoch_seconds": 500.0}) + "\n")
    for path in (died / "metrics.jsonl", died / "manifest.json"):
        os.utime(path, (start.timestamp() + 1300, start.timestamp() + 1300))
    _local_trial(study, died, TrialState.FAIL)
    now = start.timestamp() + 1000
    live, dead = study_hours(study.get_trials(), gpus=2, now=now).trials
    assert live.used == pytest.approx((600 + 300) * 2 / 3600) and live.attempts == 2
    assert not live.ended  # read again later: it runs on
    assert live.wasted == pytest.approx(600 * 2 / 3600)
    assert dead.used == pytest.approx((600 + 600) * 2 / 3600) and dead.ended
    assert dead.wasted == dead.used  # a failed trial is all waste
    later = study_hours(study.get_trials(), gpus=2, now=now + 3600).trials
    assert later[0].used == pytest.approx((600 + 3900) * 2 / 3600)  # the running one counts on
    assert later[1].used == pytest.approx(dead.used)  # the dead one does not


def test_with_sacct_down_status_and_report_say_one_line_and_count_the_manifests(tmp_path: Path) -> None:
    """slurmdbd down: sacct fails (a stand-in first on PATH prints what it prints then). Status and the
    report count the SLURM trial's hours from its manifest and say so in one line, with none of
    sacct's own error text."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text(
        "#!/bin/sh\necho 'sacct: error: Problem talking to the database: Connection refused' >&2\nexit 1\n"
    )
    (bin_dir / "sacct").chmod(0o755)
    results = tmp_path / "results"
    results.mkdir()
    study = optuna.create_study(
        study_name="down", storage=f"sqlite:///{results / 'sweep.db'}", direction="maximize"
    )
    run_dir = _run_dir_with_manifest(tmp_path / "0", datetime(2026, 1, 1, tzinfo=UTC), [(0, 1800)])
    attrs = {"config": 0, "run_dir": str(run_dir), "executor": "slurm", "job_id": "4242"}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE, value=0.5, params={"lr": 0.1},
            distributions={"lr": optuna.distributions.FloatDistribution(0.01, 1.0)}, user_attrs=attrs,
        )
    )  # fmt: skip
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    said = "sacct does not answer: the SLURM trials' hours come from their manifests"
    for command in (["status"], ["report", "--format", "md"]):
        done = subprocess.run(
            [sys.executable, "-m", "sweep", *command, "--study", "down", "--results-dir", str(results)],
            capture_output=True, text=True, env=env, timeout=deadline(120),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "sacct: error" not in done.stdout + done.stderr and "Connection refused" not in done.stdout
        assert [line for line in done.stdout.splitlines() if said in line], done.stdout
        assert "0.500 used" in done.stdout  # 1,800 s of one GPU, from the manifest
