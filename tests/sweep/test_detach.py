"""`sweep launch --detach` and `sweep logs`: studies that outlive the terminal.

Local: the launcher is a background process in a session of its own. SLURM (the real single-node
cluster of tests/sweep/executors/test_slurm.py): the launcher is a job of its own, requeued and
re-attached at a time limit, a preemption or `scontrol requeue`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.launcher import launch
from sweep.store.storage import default_url
from sweep.study import load_study
from tests.conftest import deadline
from tests.sweep.conftest import (
    ROOT,
    TINY_RESOURCES,
    TINY_TRAIN,
    assert_one_line_error,
    instant_job,
    processes_mentioning,
    program_study,
    run_sweep,
    sweep_cmd,
    sweep_main,
    wait_for,
    write_study,
)
from tests.sweep.executors import test_slurm

# the SLURM tests' fixtures: a running single-node cluster; the studies whose jobs are cleaned up
slurm_cluster = test_slurm.slurm_cluster
study_jobs = test_slurm.study_jobs


def _study_file(tmp_path: Path, name: str, *, epochs: int, lrs: list[float]) -> Path:
    return write_study(
        tmp_path / f"{name}.toml",
        study={"name": name, "sampler": "grid"},
        space={"lr": lrs},
        train={**TINY_TRAIN, "epochs": epochs},
        resources={**TINY_RESOURCES, "gpus": 0, "cpus": 1},
    )


def _trials(results: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=default_url(results)).get_trials()


def _all_complete(results: Path, name: str, count: int) -> bool:
    try:
        trials = _trials(results, name)
    except KeyError:
        return False
    return len(trials) == count and all(t.state == TrialState.COMPLETE for t in trials)


def _detach(study_file: Path, results: Path, executor: str) -> subprocess.CompletedProcess[str]:
    return run_sweep(
        "launch",
        "--study",
        str(study_file),
        "--executor",
        executor,
        "--results-dir",
        str(results),
        "--detach",
    )


# -- local ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_detached_launcher_survives_the_shell_that_started_it_and_finishes_the_study(
    tmp_path: Path,
) -> None:
    study_file = _study_file(tmp_path, "bg", epochs=2, lrs=[0.05, 0.1])
    results = tmp_path / "results"
    # a shell in a session of its own that starts the launcher and exits (as a login shell that logs out)
    args = " ".join(sweep_cmd("launch", "--study", str(study_file), "--executor", "local"))
    script = f"cd {ROOT} && {args} --results-dir {results} --detach; echo shell-exits"
    began = time.monotonic()
    shell = subprocess.run(
        ["setsid", "bash", "-c", script], capture_output=True, text=True, timeout=deadline(60)
    )
    assert time.monotonic() - began < 10 * max(1.0, deadline(1))
    assert shell.returncode == 0, shell.stderr
    assert "the launcher runs detached as process" in shell.stdout and "shell-exits" in shell.stdout
    wait_for(lambda: _all_complete(results, "bg", 2), timeout=deadline(240), what="the study to finish")
    # the launcher writes its summary after the last trial is stored: read its log once it has exited
    wait_for(
        lambda: processes_mentioning(str(results)) == [], timeout=deadline(30), what="the launcher to exit"
    )
    log = (results / "bg.launcher.log").read_text()
    assert "bg: 2 trials (2 complete)" in log


# Logs one epoch, then waits to be stopped: a trial that cannot end before the test cancels it (40 tiny
# epochs of the trainer once did, on a loaded machine, before the cancel came).
HOLDS_PY = """\
import json, os, time
with open(os.path.join(os.environ["SWEEP_RUN_DIR"], "metrics.jsonl"), "a") as handle:
    handle.write(json.dumps({"epoch": 1, "score": 0.5}) + "\\n")
time.sleep(3600)
"""


@pytest.mark.slow
def test_a_second_detach_is_refused_and_cancel_stops_the_launcher_and_its_trials(tmp_path: Path) -> None:
    (tmp_path / "holds.py").write_text(HOLDS_PY)
    holds = [str(tmp_path / "holds.py"), "{lr}"]
    study_file = program_study(tmp_path, "cx", holds, epochs=40, lrs=[0.05, 0.1])
    results = tmp_path / "results"
    first = _detach(study_file, results, "local")
    assert first.returncode == 0, first.stderr
    try:
        wait_for(
            lambda: any((results / "runs" / "cx").glob("*/metrics.jsonl")),
            timeout=deadline(120),
            what="the first epoch",
        )
        second = _detach(study_file, results, "local")
        assert_one_line_error(second, "its detached launcher still runs", "sweep cancel --study cx")
        status = run_sweep("status", "--study", "cx", "--results-dir", str(results))
        assert "launcher: process" in status.stdout and "(alive)" in status.stdout
        cancel = run_sweep("cancel", "--study", "cx", "--results-dir", str(results))
        assert cancel.returncode == 0, cancel.stderr
        assert "detached launcher" in cancel.stdout and "stopped" in cancel.stdout
        # the launcher, its jobs and their programs (named by their path in tmp_path)
        wait_for(
            lambda: processes_mentioning(str(tmp_path)) == [], timeout=deadline(60), what="no process left"
        )
        assert {t.state for t in _trials(results, "cx")} == {TrialState.FAIL}
    finally:
        for pid in processes_mentioning(str(tmp_path)):
            subprocess.run(["kill", "-9", str(pid)], check=False)


# Logs and prints 8 epochs; after the first it waits for the gate file (the test makes it once `sweep logs
# --follow` has shown that epoch): 8 tiny trainer epochs once all ran before the first line was shown.
EIGHT_EPOCHS_PY = """\
import json, os, sys, time
run_dir, gate = os.environ["SWEEP_RUN_DIR"], sys.argv[1]
for epoch in range(1, 9):
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "score": 0.1 * epoch}) + "\\n")
    print(f"epoch {epoch}/8  score {0.1 * epoch:.4f}", flush=True)
    while epoch == 1 and not os.path.exists(gate):
        time.sleep(0.05)
"""


@pytest.mark.slow
def test_logs_follow_prints_a_running_trials_epochs_as_they_happen_and_ends_with_it(tmp_path: Path) -> None:
    (tmp_path / "eight.py").write_text(EIGHT_EPOCHS_PY)
    gate = tmp_path / "gate"
    study_file = program_study(tmp_path, "lf", [str(tmp_path / "eight.py"), str(gate)], epochs=8, lrs=[0.05])
    results = tmp_path / "results"
    assert _detach(study_file, results, "local").returncode == 0
    metrics = results / "runs" / "lf" / "0" / "metrics.jsonl"
    wait_for(lambda: metrics.exists(), timeout=deadline(120), what="the first epoch")
    follow = subprocess.Popen(
        sweep_cmd("logs", "--study", "lf", "--trial", "0", "--follow", "--results-dir", str(results)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follow.stdout is not None
    seen: list[str] = []
    epochs_done_when_seen = []
    for line in follow.stdout:
        seen.append(line)
        if line.startswith("epoch "):
            epochs_done_when_seen.append(len(metrics.read_text().splitlines()))
            gate.touch()  # the program goes on past its first epoch only now
    assert follow.wait(timeout=deadline(120)) == 0
    epoch_lines = [line for line in seen if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == [f"{n}/8" for n in range(1, 9)]
    assert min(epochs_done_when_seen) < 8  # printed while the trial ran, not after it
    assert _trials(results, "lf")[0].state == TrialState.COMPLETE  # it ended with the trial
    launcher = run_sweep("logs", "--study", "lf", "--launcher", "--results-dir", str(results))
    assert "lf: 1 trial (1 complete)" in launcher.stdout


def test_logs_of_a_debug_trial_and_of_a_study_never_detached_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_file = _study_file(tmp_path, "dl", epochs=1, lrs=[0.05])
    results = tmp_path / "results"
    # a trial of the debug executor, run in this process by a job that trains nothing
    launch(
        load_study(str(study_file)),
        results_dir=results,
        executor="debug",
        out=lambda line: None,
        job=instant_job,
    )
    for args, fragment in (
        (["--trial", "0"], "ran in its launcher's process (executor debug)"),
        (["--trial", "7"], "has no trial 7"),
        (["--launcher"], "has no detached launcher"),
    ):  # the CLI in this process (`sweep logs` as a command: the tests above)
        result = sweep_main(capsys, "logs", "--study", "dl", *args, "--results-dir", str(results))
        assert_one_line_error(result, fragment)


# -- SLURM ------------------------------------------------------------------------------------------------


def _launcher_job(results: Path, name: str) -> str:
    (pickle,) = (results / "launchers" / name).glob("*_submitted.pkl")
    return pickle.name.split("_")[0]


def _sacct_state(job_id: str) -> str:
    done = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True, check=False
    )
    return done.stdout.strip().split()[0] if done.stdout.strip() else ""


@pytest.mark.slow
def test_a_detached_slurm_launcher_is_a_job_that_runs_the_study_to_the_end(
    tmp_path: Path, study_jobs: list[str]
) -> None:
    study_jobs.append("ds")
    study_file = _study_file(tmp_path, "ds", epochs=2, lrs=[0.05, 0.1])
    results = tmp_path / "results"
    began = time.monotonic()
    detached = _detach(study_file, results, "slurm")
    assert time.monotonic() - began < 10 * max(1.0, deadline(1)), "--detach must return at once"
    assert detached.returncode == 0, detached.stderr
    job = _launcher_job(results, "ds")
    assert f"SLURM job {job}" in detached.stdout
    wait_for(lambda: _all_complete(results, "ds", 2), timeout=deadline(300), what="the study to finish")
    assert all(t.user_attrs.get("job_id") for t in _trials(results, "ds"))
    wait_for(
        lambda: _sacct_state(job) == "COMPLETED", timeout=deadline(120), what="the launcher job COMPLETED"
    )


def _detached_under_way(tmp_path: Path, results: Path, name: str) -> tuple[str, Path]:
    """A study of 3 configurations of 6 epochs launched with --detach on SLURM, once its trial 0 has
    logged 2 epochs: the launcher's job id and its log."""
    assert (
        _detach(_study_file(tmp_path, name, epochs=6, lrs=[0.05, 0.1, 0.02]), results, "slurm").returncode
        == 0
    )
    job = _launcher_job(results, name)
    log = results / "launchers" / name / f"{job}_0_log.out"
    wait_for(
        lambda: log.exists() and "trial 0 epoch 2/6" in log.read_text(),
        timeout=deadline(240),
        what="the study under way",
    )
    return job, log


@pytest.mark.slow
def test_a_requeued_slurm_launcher_comes_back_and_runs_each_configuration_once(
    tmp_path: Path, study_jobs: list[str]
) -> None:
    study_jobs.append("dr")
    results = tmp_path / "results"
    job, log = _detached_under_way(tmp_path, results, "dr")
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=deadline(30))
    wait_for(lambda: _all_complete(results, "dr", 3), timeout=deadline(400), what="the study to finish")
    wait_for(
        lambda: _sacct_state(job) == "COMPLETED", timeout=deadline(120), what="the launcher job COMPLETED"
    )
    text = log.read_text()
    assert text.count("Loading pickle") == 2  # it ran twice: before and after the requeue
    assert "re-attached" in text
    trials = _trials(results, "dr")
    assert Counter(t.params["lr"] for t in trials) == {0.05: 1, 0.1: 1, 0.02: 1}  # each once
    for trial in trials:  # and each trial's epochs once, in order
        lines = (Path(trial.user_attrs["run_dir"]) / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 7))


@pytest.mark.slow
@pytest.mark.cluster_fault
def test_a_detached_slurm_launcher_rides_out_a_controller_restart(
    tmp_path: Path, study_jobs: list[str]
) -> None:
    """slurmctld stopped under a detached launcher (itself a SLURM job) until the launcher has met the
    outage (trial 0 ended and trial 1's sbatch failed): the study completes, each configuration once,
    with no relaunch by hand."""
    study_jobs.append("dc")
    results = tmp_path / "results"
    job, log = _detached_under_way(tmp_path, results, "dc")
    try:
        subprocess.run(["bash", str(test_slurm.SCRIPT), "stop-controller"], check=True, timeout=deadline(60))
        wait_for(
            lambda: "slurm: sbatch failed (" in log.read_text(),
            timeout=deadline(240),
            what="the launcher to meet the outage (an sbatch failed)",
        )
    finally:
        subprocess.run(
            ["bash", str(test_slurm.SCRIPT), "start-controller"], check=True, timeout=deadline(120)
        )
    wait_for(lambda: _all_complete(results, "dc", 3), timeout=deadline(400), what="the study to finish")
    wait_for(
        lambda: _sacct_state(job) == "COMPLETED", timeout=deadline(120), what="the launcher job COMPLETED"
    )
    text = log.read_text()
    assert text.count("Loading pickle") == 1, text  # one run of the launcher: it was never restarted
    trials = _trials(results, "dc")
    assert Counter(t.params["lr"] for t in trials) == {0.05: 1, 0.1: 1, 0.02: 1}, text  # each once
    assert [t.user_attrs["submissions"] for t in trials] == [1, 1, 1], text
    assert text.count("slurm: sbatch failed (") == text.count("slurm: sbatch answers again after") == 1, text


def test_detach_flags_are_checked(tmp_path: Path) -> None:
    study_file = _study_file(tmp_path, "fl", epochs=1, lrs=[0.05])
    result = run_sweep(
        "launch",
        "--study",
        str(study_file),
        "--detach",
        "--launcher-time",
        "0",
        "--results-dir",
        str(tmp_path),
    )
    assert_one_line_error(result, "--launcher-time must be more than 0")


@pytest.mark.slow  # a launch of local jobs, started twice
def test_logs_of_a_programs_trial_are_its_own_output_each_start_headed(tmp_path: Path) -> None:
    (tmp_path / "talk.py").write_text(
        "import os, sys, sweep\n"
        "print('hello from start', os.environ['SWEEP_RESTART'])\n"
        "print('to stderr', file=sys.stderr)\n"
        "sweep.log_epoch(1, val_acc=0.5)\n"
    )
    study_file = tmp_path / "talk.toml"
    study_file.write_text(
        '[study]\nname = "talk"\nsampler = "grid"\n[space]\nlr = [0.1]\n[resources]\ngpus = 0\ncpus = 1\n'
        f'[program]\ncommand = ["{sys.executable}", "talk.py"]\n'
    )
    results = tmp_path / "results"
    args = ("--study", str(study_file), "--results-dir", str(results))
    assert run_sweep("launch", *args[:2], "--executor", "debug", *args[2:]).returncode == 0
    out = run_sweep("logs", "--study", "talk", "--trial", "0", "--results-dir", str(results))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("hello from start 0")
    every = run_sweep("logs", "--study", "talk", "--trial", "0", "--all-attempts", "--stderr", *args[2:])
    assert every.stdout.splitlines() == ["== program start 0 ==", "to stderr"]
    # a program's start leaves its manifest too: its own folder's code, the machine, the times
    (attempt,) = json.loads((results / "runs" / "talk" / "0" / "manifest.json").read_text())["attempts"]
    assert attempt["program_dir"] == str(tmp_path.resolve()) and attempt["ended"] is not None


def test_cancel_names_a_detached_launcher_on_another_host_instead_of_signalling_a_local_pid() -> None:
    from sweep.detached import stop
    from sweep.store.records import DetachedLauncher

    elsewhere = DetachedLauncher(kind="local", log="/x.log", since=0.0, host="another-host.example", pid=1)
    lines: list[str] = []
    stop(elsewhere, lines.append)  # pid 1 here is init: it must not be signalled
    assert lines == [
        "detached launcher (process 1 on another-host.example) runs on another host: stop it there"
    ]
