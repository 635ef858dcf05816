"""The launcher loop's faults: trials of dead launchers (pid reuse, a launcher that dies while another
runs), a launcher stopped for minutes, and diverged trials."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from sweep import procs
from sweep.executors.base import Job, JobFn, Outcome
from sweep.executors.debug import DebugExecutor
from sweep.launcher.loop import MAX_SUBMISSIONS, Launcher
from sweep.store.owners import launcher_id
from sweep.store.records import TrialRecord
from sweep.study import load_study
from tests.conftest import deadline
from tests.sweep.conftest import ROOT, TINY_TRAIN, instant_job, new_study, run_sweep, sweep_cmd, write_study
from tests.sweep.test_launch import hand_claim


@pytest.fixture
def stranger() -> Iterator[int]:
    """A live process that is not a launcher: what a dead launcher's pid may belong to later."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _first_trial_held_by(tiny_smoke: Path, tmp_path: Path, holder: str) -> tuple[optuna.Study, int]:
    """A study whose trial 0 is RUNNING, its claim (and `launcher`) naming `holder`."""
    spec = load_study(tiny_smoke)
    study = new_study(spec, tmp_path)
    first = Launcher(spec, study, DebugExecutor(), results_dir=tmp_path)
    first.reconcile()
    trial = first.ask()
    assert trial is not None
    trial.set_user_attr("launcher", holder)
    hand_claim(study, 0, launcher=holder, stamped=0.0)
    return study, trial.number


@pytest.mark.parametrize("same_start", [False, True], ids=["pid-reused", "same-process"])
def test_a_dead_launchers_pid_now_used_by_another_process_does_not_keep_its_trials(
    tiny_smoke: Path, tmp_path: Path, stranger: int, same_start: bool
) -> None:
    """Fault: a dead launcher's pid given to another process kept its RUNNING trials from every later
    launch: the study never finished."""
    ticks = procs.start_ticks(stranger)
    assert ticks is not None
    holder = f"{socket.gethostname()}:{stranger}/{ticks if same_start else ticks + 1}"
    study, number = _first_trial_held_by(tiny_smoke, tmp_path, holder)
    lines: list[str] = []
    second = Launcher(load_study(tiny_smoke), study, DebugExecutor(), results_dir=tmp_path, out=lines.append)
    second.reconcile()
    # with the start time it was stored with, the process is that launcher: its trial is left alone
    assert (number in second.running) is not same_start
    if same_start:
        assert lines == [f"trial {number} is watched by the running launcher {holder}; leaving it"]


def test_an_old_style_launcher_id_whose_pid_is_not_a_sweep_process_is_dead(
    tiny_smoke: Path, tmp_path: Path, stranger: int
) -> None:
    """The repro's case: a trial from before claims, its `launcher` a `host:pid` with no start time, the
    pid now another program's."""
    spec = load_study(tiny_smoke)
    study = new_study(spec, tmp_path)
    trial = study.ask({"optimizer": optuna.distributions.CategoricalDistribution(["sgd", "adam"])})
    for key, value in {"config": 0, "repeat": 0, "launcher": f"{socket.gethostname()}:{stranger}"}.items():
        trial.set_user_attr(key, value)
    second = Launcher(spec, study, DebugExecutor(), results_dir=tmp_path, out=lambda _: None)
    second.reconcile()
    assert trial.number in second.running


def test_a_running_launcher_takes_over_the_trial_of_one_that_died_after_it_started(
    tiny_smoke: Path, tmp_path: Path
) -> None:
    """Fault: launchers took over a dead one's trials only at their own start; a launcher already
    running left it RUNNING and the study ended with it unfinished."""
    live = subprocess.Popen(["sleep", "600"])
    try:
        ticks = procs.start_ticks(live.pid)
        holder = f"{socket.gethostname()}:{live.pid}/{ticks}"
        study, number = _first_trial_held_by(tiny_smoke, tmp_path, holder)
        lines: list[str] = []
        spec = load_study(tiny_smoke)
        second = Launcher(
            spec, study, DebugExecutor(), results_dir=tmp_path, out=lines.append, job=instant_job
        )
        second.reconcile()
        assert number not in second.running  # its launcher lives
        second.scan()
        assert number not in second.running and len(lines) == 1  # said once, not at every scan
    finally:
        live.kill()
        live.wait()
    second.scan()  # the launcher is dead now: the next scan takes its trial over
    assert number in second.running
    assert study.trials[number].user_attrs["launcher"] == launcher_id()


def test_a_launcher_whose_trial_was_taken_over_while_it_was_stopped_leaves_it(
    tiny_smoke: Path, tmp_path: Path
) -> None:
    """Fault: a launcher stopped for minutes (Ctrl-Z, a suspended laptop) came back and went on watching
    a trial that another launcher had taken over: two launchers reported one trial, one crashed."""
    spec = load_study(tiny_smoke)
    study = new_study(spec, tmp_path)
    lines: list[str] = []
    launcher = Launcher(spec, study, DebugExecutor(), results_dir=tmp_path, out=lines.append, job=instant_job)
    launcher.reconcile()
    trial = launcher.ask()
    assert trial is not None
    launcher.submit(trial)
    assert trial.number in launcher.running
    # taken over meanwhile by a launcher on another host, which stamps it since
    hand_claim(study, 0, launcher="other-host.example:77/1", stamped=time.time())
    launcher.scan()
    assert trial.number not in launcher.running
    assert lines[-1] == (
        f"trial {trial.number} is now watched by launcher other-host.example:77/1 "
        "(this launcher was silent too long); left"
    )


@pytest.mark.slow
def test_a_diverged_trial_is_a_result_not_a_failure(tmp_path: Path) -> None:
    """Fault: a trial whose metric was NaN was announced 'complete ... nan', stored FAIL with no reason,
    with a raw Optuna warning on the terminal, and run again by the next launch."""
    study_file = write_study(
        tmp_path / "nan.toml",
        study={"name": "nan", "sampler": "grid", "metric": "val_loss", "direction": "minimize"},
        space={"lr": [1000.0, 0.05]},
        train={**TINY_TRAIN, "momentum": 0.0},
    )
    results = tmp_path / "results"
    args = ("launch", "--study", str(study_file), "--executor", "debug", "--results-dir", str(results))
    result = run_sweep(*args, timeout=deadline(300))
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "nan" not in result.stderr
    assert "trial 0 diverged: val_loss nan at epoch 1/2; job stopped, its epochs kept" in result.stdout
    study = optuna.load_study(study_name="nan", storage=f"sqlite:///{results / 'sweep.db'}")
    diverged, fine = study.trials
    assert diverged.state == TrialState.PRUNED and diverged.user_attrs["diverged"].startswith("val_loss nan")
    assert fine.state == TrialState.COMPLETE
    assert (Path(diverged.user_attrs["run_dir"]) / "metrics.jsonl").read_text().count("NaN") >= 1
    again = run_sweep(*args, timeout=deadline(300))
    assert again.returncode == 0 and "submitted" not in again.stdout  # a result: not run again
    assert len(optuna.load_study(study_name="nan", storage=f"sqlite:///{results / 'sweep.db'}").trials) == 2
    report = run_sweep("report", "--study", "nan", "--results-dir", str(results))
    assert report.returncode == 0, report.stderr
    rows = [line for line in report.stdout.splitlines() if line.startswith("| ")]
    (diverged_row,) = [row for row in rows if "1000" in row]
    assert diverged_row.count("diverged") >= 2  # its row is in the table, every metric cell says so
    (fine_row,) = [row for row in rows if "0.05" in row]
    assert "diverged" not in fine_row and "**" in fine_row  # the other one is the best
    assert "Diverged: val_loss became NaN or infinite" in report.stdout
    status = run_sweep("status", "--results-dir", str(results))
    assert "diverged: val_loss nan at epoch 1/2" in status.stdout.splitlines()[1]  # trial 0's line


@pytest.mark.slow
def test_a_job_killed_by_hand_is_resumed_however_often_and_never_fails_the_trial(
    tmp_path: Path, sessions: list
) -> None:
    """Fault: a job killed by hand counted as a failed submission: the third kill failed the trial."""
    study_file = write_study(
        tmp_path / "kills.toml",
        study={"name": "kills", "sampler": "grid"},
        space={"lr": [0.05]},
        train={**TINY_TRAIN, "epochs": 14},  # the last kill lands well before the last epoch
    )
    results = tmp_path / "results"
    args = ("launch", "--study", str(study_file), "--executor", "local", "--results-dir", str(results))
    launcher = subprocess.Popen(
        sweep_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    sessions.append(launcher)
    assert launcher.stdout is not None
    kills, job, lines = 0, None, []
    for line in launcher.stdout:
        lines.append(line)
        if " submitted" in line:
            job = int(line.split(" job ")[1].split()[0])
        elif " epoch " in line and job is not None and kills < MAX_SUBMISSIONS + 1:
            os.kill(job, signal.SIGKILL)  # `kill -9` of the job id `sweep status` shows
            kills, job = kills + 1, None
    assert launcher.wait(timeout=deadline(60)) == 0, "".join(lines)
    assert kills == MAX_SUBMISSIONS + 1
    text = "".join(lines)
    assert text.count("was killed from outside; resuming it") == kills
    (trial,) = optuna.load_study(study_name="kills", storage=f"sqlite:///{results / 'sweep.db'}").trials
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["submissions"] == 1
    metrics = (results / "runs" / "kills" / "0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in metrics] == list(range(1, 15))  # each once, in order


SRUN_DOWN = "srun: error: Unable to confirm allocation for job 7: Unable to contact slurm controller"


class NeverStarted(Job):
    """A SLURM job whose srun could not reach a restarting controller: it ended without running the trial."""

    job_id = "7"

    def done(self) -> bool:
        return True

    def cancel(self) -> None:
        pass

    def outcome(self) -> Outcome:
        return Outcome("lost", SRUN_DOWN, outage=True)


class OutageAtFirstStart(DebugExecutor):
    """Debug jobs, but the first one never starts its trial, the next MAX_SUBMISSIONS ones run it."""

    def __init__(self) -> None:
        super().__init__()
        self.starts = 0

    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        self.starts += 1
        return NeverStarted() if self.starts == 1 else super().submit(fn, config, run_dir)


def test_a_job_that_could_not_start_the_trial_in_an_outage_is_submitted_again_uncounted(
    tiny_smoke: Path, tmp_path: Path
) -> None:
    """Fault: a controller restart under a starting job made its srun give up; the job ended without a
    result and the launcher counted it as one of the trial's three submissions."""
    spec = load_study(tiny_smoke)
    study = new_study(spec, tmp_path)
    lines: list[str] = []
    executor = OutageAtFirstStart()
    Launcher(spec, study, executor, results_dir=tmp_path, out=lines.append, job=instant_job).run()
    trials = study.get_trials()
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert [TrialRecord.of(t).submissions for t in trials] == [1] * len(trials)  # the lost start not counted
    assert executor.starts == len(trials) + 1
    assert f"trial 0 job 7 did not start the trial ({SRUN_DOWN}); resuming it" in lines
