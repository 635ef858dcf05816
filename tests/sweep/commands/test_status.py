"""`sweep status` of SLURM trials: a long `--watch` keeps to the launcher's budget of squeue calls, and a
scheduler that does not answer is said once for the table."""

from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.commands import status
from sweep.store import records
from sweep.store.storage import default_url
from sweep.views import live
from tests.sweep import fake_slurm
from tests.sweep.conftest import sweep_main

WATCHED_S = 120.0  # the simulated span of the watch
INTERVAL_S = 2.0  # its --interval (the default)
DOWN = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"


def _slurm_study(results: Path, running: int = 3) -> optuna.Study:
    """`w`: `running` RUNNING trials, each with a SLURM job and a run dir with one epoch."""
    results.mkdir(parents=True)
    study = optuna.create_study(study_name="w", storage=default_url(results), direction="maximize")
    for number in range(running):
        run_dir = results / "runs" / "w" / str(number)
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": 0.5}) + "\n")
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.0, 1.0)})
        records.write(trial, executor="slurm", job_id=str(500 + number), run_dir=run_dir)
    return study


def _study_file(folder: Path, slurm_query_s: float | None) -> Path:
    waits = "" if slurm_query_s is None else f"[waits]\nslurm_query_s = {slurm_query_s}\n"
    path = folder / "w.toml"
    path.write_text(
        '[study]\nname = "w"\nsampler = "grid"\n[space]\nlr = [0.1, 0.2, 0.3]\n'
        f"[resources]\ngpus = 0\ncpus = 1\n{waits}"
    )
    return path


class SimulatedClock:
    """time.monotonic and time.sleep of the watch: each sleep moves the clock on at once. Once the
    span is over, the study's trials end (the watch then ends); half-way, trial 0 logs an epoch."""

    def __init__(self, study: optuna.Study, bin_dir: Path) -> None:
        self.now = 1000.0
        self.start = self.now
        self.study = study
        self.bin_dir = bin_dir
        self.squeue_at: list[float] = []  # the simulated time of each squeue call

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        calls = len(fake_slurm.call_times(self.bin_dir, "squeue"))
        self.squeue_at += [self.now] * (calls - len(self.squeue_at))
        self.now += seconds
        if self.now - self.start >= WATCHED_S / 2 and not hasattr(self, "logged"):
            self.logged = True
            run_dir = records.TrialRecord.of(self.study.trials[0]).run_dir
            assert run_dir is not None
            with (run_dir / "metrics.jsonl").open("a") as metrics:
                metrics.write(json.dumps({"epoch": 2, "val_acc": 0.75}) + "\n")
        if self.now - self.start >= WATCHED_S:
            for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                self.study.tell(trial.number, 0.5)


def _watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, study_file: Path | None
) -> tuple[SimulatedClock, list[str]]:
    bin_dir = fake_slurm.install(tmp_path / "bin", monkeypatch, gone_after_s=0)
    results = tmp_path / "results"
    clock = SimulatedClock(_slurm_study(results), bin_dir)
    monkeypatch.setattr(time, "monotonic", clock.monotonic)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    monkeypatch.setattr(live, "on_terminal", lambda: False)
    lines: list[str] = []
    status.watch(
        default_url(results), str(study_file) if study_file else "w", interval=INTERVAL_S, out=lines.append
    )
    monkeypatch.undo()
    return clock, lines


@pytest.mark.parametrize(("slurm_query_s", "expected"), [(20.0, 6), (None, 4)])
def test_a_long_watch_asks_squeue_at_most_once_per_slurm_query_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_query_s: float | None, expected: int
) -> None:
    """Issue 34: `status --watch` ran squeue at every read (every 2 s: 60 calls in two minutes); it now
    asks at most once per [waits] slurm_query_s (the study file's, else 30 s), while the storage and the
    run dirs are still read at every interval."""
    study_file = _study_file(tmp_path, slurm_query_s) if slurm_query_s is not None else None
    clock, lines = _watch(tmp_path, monkeypatch, study_file)
    calls = clock.squeue_at
    every = slurm_query_s or 30.0
    print(f"status --watch over {WATCHED_S:g} s at --interval {INTERVAL_S:g}: {len(calls)} squeue calls")
    assert len(calls) == expected  # at 0 s, then once every slurm_query_s until the trials end
    assert all(b - a >= every for a, b in zip(calls, calls[1:], strict=False))
    # the run dirs are read at every interval: trial 0's new epoch shows within one
    logged = [i for i, text in enumerate(lines) if "#0   RUNNING" in text and "epochs 2" in text]
    assert logged, lines
    assert "slurm RUNNING" in lines[0] and lines[-1].rstrip().endswith("3 trials: 3 complete")


def test_a_scheduler_outage_is_said_once_for_the_table_not_on_every_running_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 34: during an outage every running trial's line repeated squeue's raw error."""
    bin_dir = fake_slurm.install(tmp_path / "bin", monkeypatch, gone_after_s=0)
    (bin_dir / "squeue.err").write_text(f"{DOWN}\n")
    results = tmp_path / "results"
    _slurm_study(results)
    shown = sweep_main(capsys, "status", "--study", "w", "--results-dir", str(results))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    said = [line for line in lines if DOWN in line]
    assert said == [
        f"  slurm does not answer (squeue failed: {DOWN}): the running trials' job states are unknown"
    ]
    assert lines.index(said[0]) == 1  # under the study's header, above the rows
    rows = [line for line in lines if line.startswith("  #")]
    assert len(rows) == 3 and all(
        "job 50" in row and "(slurm: unknown (scheduler not answering))" in row for row in rows
    )
    one = sweep_main(capsys, "status", "--study", "w", "--trial", "1", "--results-dir", str(results))
    assert "  job 501 (slurm; slurm: unknown (scheduler not answering))" in one.stdout.splitlines()
    assert sum(DOWN in line for line in one.stdout.splitlines()) == 1
