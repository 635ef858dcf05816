"""A job told `stop_after_epoch` (issue 33's pause at a rung) passes SWEEP_STOP_AFTER_EPOCH to the trainer
or the program; a job told None clears a value it inherited."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from sweep.executors import job as job_module
from sweep.executors.job import TrainJob
from sweep.executors.program import ProgramJob
from sweep.study.spec import Program
from tests.conftest import tiny_config
from trainer.metrics import read_epochs
from trainer.paths import RunPaths
from trainer.rung_word import RUNG_EPOCHS
from trainer.stop import STOP_AFTER_EPOCH

# Says what it was given, and logs the study's metric (a program that logs none fails its trial).
SAYS = """\
import json, os
print(os.environ.get("SWEEP_STOP_AFTER_EPOCH"))
with open(os.environ["SWEEP_RUN_DIR"] + "/metrics.jsonl", "a") as handle:
    handle.write(json.dumps({"epoch": 1, "score": 1}) + "\\n")
"""
# Checkpoints, then logs with sweep.log_epoch, which ends it at the pause; resumes from its checkpoint.
PAUSING = """\
import os, pathlib
from sweep import log_epoch
run = pathlib.Path(os.environ["SWEEP_RUN_DIR"])
checkpoint = run / "checkpoint.txt"
start = int(checkpoint.read_text()) if checkpoint.exists() else 0
for epoch in range(start + 1, 6):
    checkpoint.write_text(str(epoch))
    log_epoch(epoch, score=0.1 * epoch)
"""


@pytest.mark.parametrize(("stop", "seen"), [(4, "4"), (None, None)])
def test_a_train_job_sets_the_variable_for_the_trainer_or_clears_it_and_restores_it_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: int | None, seen: str | None
) -> None:
    told: list[str | None] = []

    def train(config: dict[str, Any], run_dir: str) -> dict[str, Any]:
        told.append(os.environ.get(STOP_AFTER_EPOCH))
        return {}

    monkeypatch.setattr(job_module, "train", train)
    monkeypatch.setenv(STOP_AFTER_EPOCH, "7")  # inherited from the launcher's environment
    TrainJob(stop_after_epoch=stop)({}, str(tmp_path))
    assert told == [seen]
    assert os.environ[STOP_AFTER_EPOCH] == "7"  # a debug job runs in the launcher: its env is left as it was


def test_a_train_job_told_to_stop_pauses_the_trainer_and_a_later_job_finishes_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STOP_AFTER_EPOCH, raising=False)
    config, paths = tiny_config(epochs=3).to_dict(), RunPaths(tmp_path / "run")
    job = cloudpickle.loads(cloudpickle.dumps(TrainJob(stop_after_epoch=2)))  # as submitit ships it
    assert job(config, str(paths.run_dir))["epochs"] == 2
    assert paths.checkpoint.exists() and not paths.result.exists()
    assert TrainJob()(config, str(paths.run_dir))["epochs"] == 3
    assert [line["epoch"] for line in read_epochs(paths.metrics)] == [1, 2, 3] and paths.result.exists()


def test_a_job_pickled_before_stop_after_epoch_existed_runs_without_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SLURM requeue across an upgrade unpickles a job that has no stop_after_epoch."""
    told: list[str | None] = []
    monkeypatch.setattr(
        job_module, "train", lambda config, run_dir: told.append(os.environ.get(STOP_AFTER_EPOCH))
    )
    monkeypatch.setenv(STOP_AFTER_EPOCH, "7")
    (tmp_path / "says.py").write_text(SAYS)
    program = Program(command=(sys.executable, "says.py"), workdir=str(tmp_path))
    run_dir = tmp_path / "runs" / "s" / "0"
    for job in (TrainJob(stop_after_epoch=2), ProgramJob(program, "score", stop_after_epoch=2)):
        del job.__dict__["stop_after_epoch"]
        cloudpickle.loads(cloudpickle.dumps(job))({}, str(run_dir))
    assert told == [None]
    assert (run_dir / "program.0.out").read_text() == "None\n"


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "3"])
def test_a_bad_stop_after_epoch_is_refused_at_construction(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match="stop_after_epoch must be None or an integer >= 1"):
        TrainJob(stop_after_epoch=bad)
    with pytest.raises(ValueError, match="stop_after_epoch must be None or an integer >= 1"):
        ProgramJob(Program(command=("true",), workdir=str(tmp_path)), "score", stop_after_epoch=bad)


@pytest.mark.parametrize(("stop", "seen"), [(6, "6"), (None, "None")])
def test_a_program_job_passes_the_variable_or_clears_an_inherited_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: int | None, seen: str
) -> None:
    monkeypatch.setenv(STOP_AFTER_EPOCH, "9")  # the launcher's environment, and the study's [program] env
    (tmp_path / "says.py").write_text(SAYS)
    program = Program(command=(sys.executable, "says.py"), workdir=str(tmp_path), env={STOP_AFTER_EPOCH: "9"})
    run_dir = tmp_path / "runs" / "s" / "0"
    ProgramJob(program, "score", stop_after_epoch=stop)({}, str(run_dir))
    assert (run_dir / "program.0.out").read_text() == f"{seen}\n"
    assert os.environ[STOP_AFTER_EPOCH] == "9"


def test_a_log_epoch_program_pauses_at_the_stop_and_resumes_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STOP_AFTER_EPOCH, raising=False)
    (tmp_path / "train.py").write_text(PAUSING)
    program = Program(command=(sys.executable, "train.py"), workdir=str(tmp_path))
    run_dir = tmp_path / "runs" / "s" / "0"
    assert ProgramJob(program, "score", stop_after_epoch=3)({}, str(run_dir)) == {"epochs": 3}
    assert ProgramJob(program, "score")({}, str(run_dir)) == {"epochs": 5}
    assert [line["epoch"] for line in read_epochs(run_dir / "metrics.jsonl")] == [1, 2, 3, 4, 5]


# Says the rungs it was told (an asynchronous pruner's, issue 33's rung word), and logs the metric.
SAYS_RUNGS = """\
import json, os
print(os.environ.get("SWEEP_RUNG_EPOCHS"))
with open(os.environ["SWEEP_RUN_DIR"] + "/metrics.jsonl", "a") as handle:
    handle.write(json.dumps({"epoch": 1, "score": 1}) + "\\n")
"""


@pytest.mark.parametrize(("rungs", "seen"), [("2,6,18", "2,6,18"), (None, None)])
def test_a_job_passes_its_rung_epochs_or_clears_inherited_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rungs: str | None, seen: str | None
) -> None:
    told: list[str | None] = []
    monkeypatch.setattr(job_module, "train", lambda config, run_dir: told.append(os.environ.get(RUNG_EPOCHS)))
    monkeypatch.setenv(RUNG_EPOCHS, "5-")  # the launcher's own environment, and the study's [program] env
    TrainJob(rung_epochs=rungs)({}, str(tmp_path / "train"))
    assert told == [seen] and os.environ[RUNG_EPOCHS] == "5-"  # restored: a debug job runs in the launcher
    (tmp_path / "says.py").write_text(SAYS_RUNGS)
    program = Program(command=(sys.executable, "says.py"), workdir=str(tmp_path), env={RUNG_EPOCHS: "5-"})
    run_dir = tmp_path / "runs" / "s" / "0"
    job = cloudpickle.loads(cloudpickle.dumps(ProgramJob(program, "score", rung_epochs=rungs)))
    job({}, str(run_dir))
    assert (run_dir / "program.0.out").read_text() == f"{seen}\n"


def test_bad_rung_epochs_are_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"rung_epochs: {RUNG_EPOCHS} must be epochs"):
        TrainJob(rung_epochs="2,x")
    with pytest.raises(ValueError, match=f"rung_epochs: {RUNG_EPOCHS} must be epochs"):
        ProgramJob(Program(command=("true",), workdir=str(tmp_path)), "score", rung_epochs="0")
