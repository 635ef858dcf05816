"""`sweep.log_epoch`: what a training program calls; a resumed epoch replaces its line, never doubles it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweep import log_epoch
from tests.conftest import deadline
from trainer.metrics import read_epochs


def _epochs(path: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()]


def test_epochs_append_and_a_resumed_epoch_replaces_its_line(tmp_path: Path) -> None:
    for epoch in (1, 2, 3):
        log_epoch(epoch, run_dir=tmp_path, acc=0.1 * epoch, loss=1.0 / epoch)
    # resumed from the checkpoint of epoch 1: epochs 2 and 3 are logged again, with other values
    log_epoch(2, run_dir=tmp_path, acc=0.25, loss=0.4)
    assert _epochs(tmp_path / "metrics.jsonl") == [1, 2]  # epoch 3 belonged to the lost run
    log_epoch(3, run_dir=tmp_path, acc=0.35, loss=0.3)
    history = read_epochs(tmp_path / "metrics.jsonl")
    assert [(e["epoch"], e["acc"]) for e in history] == [(1, 0.1), (2, 0.25), (3, 0.35)]


def test_the_run_dir_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEP_RUN_DIR", str(tmp_path))
    log_epoch(1, score=3)
    assert read_epochs(tmp_path / "metrics.jsonl") == [{"epoch": 1.0, "score": 3.0}]


def test_outside_sweep_the_epoch_is_printed_to_stderr_and_nothing_is_written(tmp_path: Path) -> None:
    # the same script a study runs, run by hand: no SWEEP_RUN_DIR
    script = "from sweep import log_epoch\nfor e in (1, 2):\n    log_epoch(e, val_acc=0.5 * e, loss=1 / e)\n"
    env = {key: value for key, value in os.environ.items() if key != "SWEEP_RUN_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=deadline(60),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["epoch 1  val_acc 0.5  loss 1", "epoch 2  val_acc 1  loss 0.5"]
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("epoch", "metrics", "message"),
    [(0, {"a": 1.0}, "epoch must be"), (1.5, {"a": 1.0}, "epoch must be"), (1, {"a": "high"}, "metric a")],
)
def test_bad_calls_are_value_errors(tmp_path: Path, epoch: object, metrics: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        log_epoch(epoch, run_dir=tmp_path, **metrics)  # type: ignore[arg-type]


def test_importing_the_helper_loads_no_torch_optuna_or_submitit() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); from sweep import log_epoch; "
        "print(time.perf_counter() - t); "
        "heavy = [m for m in ('torch', 'optuna', 'submitit', 'pandas') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=deadline(60))
    assert done.returncode == 0, done.stderr
    print(f"import sweep.log_epoch: {float(done.stdout) * 1000:.1f} ms")
