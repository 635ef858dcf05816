"""benchmarks/overhead.py and its no-op job, with a few trials (the numbers are not checked)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from benchmarks.noop_job import noop
from benchmarks.overhead import main, study_spec
from trainer.metrics import TrainResult, read_metrics


def test_the_noop_job_leaves_what_the_launcher_reads(tmp_path: Path) -> None:
    result = noop({"lr": 0.25}, str(tmp_path))
    assert [record.val_acc for record in read_metrics(tmp_path / "metrics.jsonl")] == [0.25]
    assert set(result) == {f.name for f in dataclasses.fields(TrainResult)}


def test_the_study_is_a_grid_of_the_asked_size(tmp_path: Path) -> None:
    spec = study_spec(7, tmp_path)
    assert spec.sampler == "grid" and len(spec.planned_trials()) == 7


@pytest.mark.slow  # the benchmark's whole run: launches on both executors
def test_both_executors_and_plain_optuna_run_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # a local job's subprocess must import benchmarks.noop_job all the same
    monkeypatch.setenv("PYTHONPATH", "")  # restored afterwards: main() puts the repository root there
    assert main(["--trials", "2", "--repeats", "1", "--poll-s", "0.01", "--report-trials", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    labels = [line.split("  ")[0] for line in lines[1:]]
    assert labels == [
        "plain optuna, sqlite",
        "plain optuna, in memory",
        "plain optuna + submitit local",
        "sweep launch, debug, poll 0.01 s",
        "sweep launch, local, poll 0.01 s",
        "sweep report, 30 trials",
    ]
    assert all("ms/trial" in line for line in lines[1:-1])
    assert "x plain submitit)" in lines[-2]  # the local line is also compared with submitit's own cost
    assert lines[-1].endswith("target <= 2 s)")


def test_programs_add_a_command_and_a_callable_line_per_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "")
    args = [
        "--trials",
        "2",
        "--repeats",
        "1",
        "--poll-s",
        "0.01",
        "--report-trials",
        "0",
        "--executors",
        "debug",
    ]
    assert main([*args, "--programs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    programs = [
        line
        for line in lines
        if line.startswith(("sweep launch, debug, command", "sweep launch, debug, callable"))
    ]
    assert len(programs) == 2 and all(line.endswith("x the no-op job)") for line in programs)
