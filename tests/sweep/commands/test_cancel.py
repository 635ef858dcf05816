"""`sweep cancel` of local jobs: every process of the job is stopped in seconds, whatever signals the
launcher's shell left ignored, and so is a job whose launcher died before storing its id."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from sweep.commands.cancel import cancel_study
from sweep.executors.local import LocalExecutor
from sweep.store import records
from sweep.study import Resources
from tests.conftest import deadline
from tests.sweep import fake_slurm
from tests.sweep.conftest import (
    ROOT,
    TEST_WAITS_TOML,
    TINY_TRAIN,
    processes_mentioning,
    run_sweep,
    sweep_cmd,
    wait_for,
    write_study,
)
from tests.sweep.executors.conftest import kill_mentioning

SIGINT_BIT = 1 << 1  # bit signum-1 of /proc/PID/status's SigIgn mask


@pytest.fixture
def no_leftovers(tmp_path: Path) -> Iterator[Path]:
    """`tmp_path`; every process still running for it is killed after the test, passed or failed."""
    yield tmp_path
    kill_mentioning(str(tmp_path))


def sleep_in_run_dir(config: dict[str, Any], run_dir: str) -> None:
    """A local job that says it started, then runs for `seconds` or until SIGTERM, as sweep's own jobs
    do (submitit's handler would ignore it, and the cancel sit out the 5 s grace before its SIGKILL)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    (Path(run_dir) / "started").write_text("")
    time.sleep(config["seconds"])


def _ignored_signals(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("SigIgn:"))
    return int(line.split()[1], 16)


@pytest.mark.slow
def test_cancel_stops_every_process_of_a_job_whose_launcher_ignores_sigint(no_leftovers: Path) -> None:
    """Fault 09: `nohup sweep launch ... &` in a script ignores SIGINT, which was how a local job was
    stopped: cancel took ~26 s and its SIGKILL of the controller left the trainer running."""
    study = write_study(
        no_leftovers / "c9b.toml", study={"name": "c9b", "sampler": "grid"}, space={"lr": [0.05]},
        train={**TINY_TRAIN, "epochs": 2000},
    )  # fmt: skip
    results, log = no_leftovers / "results", no_leftovers / "c9b.log"
    launch = shlex.join(
        sweep_cmd("launch", "--study", str(study), "--executor", "local", "--results-dir", str(results))
    )
    # A non-interactive shell starts a background command with SIGINT and SIGQUIT ignored.
    started = subprocess.run(
        ["bash", "-c", f"nohup {launch} > {shlex.quote(str(log))} 2>&1 & echo $!"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    launcher = int(started.stdout)
    assert _ignored_signals(launcher) & SIGINT_BIT
    wait_for(lambda: "epoch 1/2000" in log.read_text(), timeout=deadline(120), what="the first epoch")
    run_dir = results / "runs" / "c9b" / "0"
    assert processes_mentioning(str(run_dir))

    start = time.monotonic()
    cancelled = run_sweep("cancel", "--study", "c9b", "--results-dir", str(results), timeout=deadline(60))
    took = time.monotonic() - start
    assert cancelled.returncode == 0, cancelled.stderr
    assert "trial 0 cancelled  job " in cancelled.stdout
    assert processes_mentioning(str(run_dir)) == []  # the trainer too, not only its controller
    assert took < 20, f"sweep cancel took {took:.1f} s"  # it waited 10 s per ignored signal
    epochs = len((run_dir / "metrics.jsonl").read_text().splitlines())
    assert 1 <= epochs < 2000 and (run_dir / "checkpoint.pt").exists()  # resumable where it stopped


def test_cancel_stops_the_job_a_dead_launcher_never_recorded(no_leftovers: Path) -> None:
    """Fault 10: a launcher killed between starting a job and storing its id left a trial RUNNING with
    a run dir and no job id; cancel said `job none` and the job ran on."""
    results = no_leftovers / "results"
    run_dir = results / "runs" / "cr9" / "0"
    results.mkdir()
    study = optuna.create_study(study_name="cr9", storage=f"sqlite:///{results / 'sweep.db'}")
    trial = study.ask()  # RUNNING, as the dead launcher left it: run dir and executor, no job id
    records.write(trial, executor="local", run_dir=run_dir, submissions=1)
    job = LocalExecutor(Resources(gpus=0)).submit(sleep_in_run_dir, {"seconds": 600}, run_dir)
    wait_for((run_dir / "started").exists, timeout=deadline(60), what="the job to start")

    cancelled = run_sweep("cancel", "--study", "cr9", "--results-dir", str(results), timeout=deadline(60))
    assert cancelled.returncode == 0, cancelled.stderr
    line = f"trial 0 cancelled  job {job.job_id} (found in its run dir) (local); marked FAIL"
    assert line in cancelled.stdout.splitlines()
    assert processes_mentioning(str(run_dir)) == []
    stored = optuna.load_study(study_name="cr9", storage=f"sqlite:///{results / 'sweep.db'}").trials[0]
    assert stored.state == TrialState.FAIL
    assert records.TrialRecord.of(stored).job_id == job.job_id


def test_an_attached_launcher_stopped_by_cancel_says_so_and_exits_143(no_leftovers: Path) -> None:
    study = no_leftovers / "att.toml"
    study.write_text(
        '[study]\nname = "att"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
        f"[space]\nlr = [0.1]\n[resources]\ngpus = 0\ncpus = 1\n{TEST_WAITS_TOML}"
        f'[program]\ncommand = ["{sys.executable}", "-c", "import time; time.sleep(600)"]\n'
    )
    results, log = no_leftovers / "results", no_leftovers / "att.log"
    with log.open("w") as output:
        launcher = subprocess.Popen(
            sweep_cmd("launch", "--study", str(study), "--executor", "local", "--results-dir", str(results)),
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        wait_for(lambda: "trial 0 submitted" in log.read_text(), timeout=deadline(60), what="the submission")
        cancelled = run_sweep("cancel", "--study", "att", "--results-dir", str(results), timeout=deadline(60))
        assert cancelled.returncode == 0, cancelled.stderr
        assert launcher.wait(timeout=deadline(30)) == 143
    finally:
        launcher.kill()
    lines = log.read_text().splitlines()
    assert lines[-1] == (
        "att: launcher stopped by sweep cancel (or another SIGTERM); its trials' jobs are left to the cancel "
        "(a new `sweep launch` re-attaches any still running)"
    )
    assert "Traceback" not in log.read_text()


GONE_AFTER_S = 3.0  # the fake cluster's KillWait: cancelled jobs leave squeue this long after scancel


def test_cancel_of_twenty_slurm_jobs_asks_squeue_at_most_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 34: cancel ran squeue back to back (a 0.05 s step) until its jobs went, up to 7 calls a
    second; it now asks once a second, and still returns within a second of the jobs' going."""
    bin_dir = fake_slurm.install(tmp_path / "bin", monkeypatch, gone_after_s=GONE_AFTER_S)
    results = tmp_path / "results"
    results.mkdir()
    study = optuna.create_study(study_name="c20", storage=f"sqlite:///{results / 'sweep.db'}")
    for number in range(20):
        records.write(study.ask(), executor="slurm", job_id=str(1000 + number), run_dir=results / str(number))
    lines: list[str] = []
    cancel_study(study, out=lines.append)
    (scancel,) = fake_slurm.call_times(bin_dir, "scancel")  # one scancel for all twenty jobs
    ended = time.monotonic()
    squeue = fake_slurm.call_times(bin_dir, "squeue")
    most = fake_slurm.most_in_one_second(squeue)
    print(f"cancel of 20 jobs gone {GONE_AFTER_S:g} s after scancel: {len(squeue)} squeue, {most} in 1 s")
    assert len(squeue) <= GONE_AFTER_S + 2 and most <= 1
    assert squeue[-1] - scancel < GONE_AFTER_S + 1.5  # the last call is the one that saw them gone
    assert ended - scancel < GONE_AFTER_S + deadline(3)
    assert lines[-1] == "c20: 20 running trials cancelled"
    assert all(t.state == TrialState.FAIL for t in study.get_trials(deepcopy=False))
