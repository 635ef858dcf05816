"""benchmarks/efficiency.py's parts: the surrogate read directly, the replay program, the reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.efficiency import GRID, sync_sha
from benchmarks.lcbench import EPOCHS, Config, Curve, curves
from sweep.errors import SweepError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "yahpo-lcbench"
needs_data = pytest.mark.skipif(not (DATA / "model.onnx").is_file(), reason=f"no surrogate at {DATA}")


@needs_data
def test_the_surrogate_gives_every_configuration_52_epochs_of_time_that_never_falls() -> None:
    pytest.importorskip("onnxruntime")
    table = curves(
        DATA, "3945", GRID[:3] + [Config(batch_size=128, learning_rate=0.01, max_units=256, num_layers=3)]
    )
    assert len(table) == 4
    for curve in table.values():
        assert len(curve.time) == len(curve.val_accuracy) == EPOCHS
        assert all(later >= earlier for earlier, later in zip(curve.time, curve.time[1:], strict=False))
        assert curve.time[-1] > curve.time[0] > 0
        assert all(0 < value <= 100 for value in curve.val_accuracy)
    # one query per configuration gives the same numbers as the batch
    alone = curves(DATA, "3945", [GRID[1]])[GRID[1].key]
    assert alone.val_accuracy == pytest.approx(table[GRID[1].key].val_accuracy, abs=1e-4)
    assert table[GRID[0].key] != table[GRID[1].key]


@needs_data
def test_an_unknown_task_is_one_error_naming_it() -> None:
    pytest.importorskip("onnxruntime")
    with pytest.raises(SweepError, match="--tasks: 99 is not an LCBench task"):
        curves(DATA, "99", GRID[:1])


def _flat(accuracy: float, epochs: int = 3, seconds: float = 1.0) -> Curve:
    return Curve(time=tuple(seconds * (e + 1) for e in range(epochs)), val_accuracy=(accuracy,) * epochs)


def test_synchronous_halving_keeps_the_best_third_at_each_rung() -> None:
    # 9 flat curves, accuracy = index; rungs 1, 2, 3: all 9 run 1 epoch, the best 3 a second, the best
    # one a third
    table = {str(index): _flat(float(index)) for index in range(9)}
    used, winner = sync_sha(table, rungs=(1, 2, 3), eta=3)
    assert used == pytest.approx(9 * 1.0 + 3 * 1.0 + 1 * 1.0)
    assert winner == "8"


def test_the_replay_program_logs_the_curve_and_continues_after_a_restart(tmp_path: Path) -> None:
    curve = {"time": [1.5, 3.0, 4.5], "val_accuracy": [50.0, 60.0, 55.0]}
    (tmp_path / "curves.json").write_text(json.dumps({"k": curve}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    program = Path(__file__).resolve().parents[2] / "benchmarks" / "replay_epochs.py"
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(json.dumps({"epoch": 1, "val_acc": 50.0, "train_time": 1.5, "at": 0.0}) + "\n")
    env = {**os.environ, "SWEEP_RUN_DIR": str(run_dir)}
    subprocess.run(
        [sys.executable, str(program), str(tmp_path / "curves.json"), "k", "0.01"], env=env, check=True
    )
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert [line["val_acc"] for line in lines] == curve["val_accuracy"]
    assert [line["train_time"] for line in lines] == curve["time"]


def test_the_replay_program_pauses_after_the_epoch_it_is_told_and_resumes(tmp_path: Path) -> None:
    curve = {"time": [1.0, 2.0, 3.0, 4.0], "val_accuracy": [50.0, 60.0, 65.0, 70.0]}
    (tmp_path / "curves.json").write_text(json.dumps({"k": curve}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    program = Path(__file__).resolve().parents[2] / "benchmarks" / "replay_epochs.py"
    command = [sys.executable, str(program), str(tmp_path / "curves.json"), "k", "0.01"]
    env = {**os.environ, "SWEEP_RUN_DIR": str(run_dir), "SWEEP_STOP_AFTER_EPOCH": "2"}
    subprocess.run(command, env=env, check=True)
    metrics = run_dir / "metrics.jsonl"
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2]
    subprocess.run(command, env={**env, "SWEEP_STOP_AFTER_EPOCH": ""}, check=True)
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2, 3, 4]


def test_the_replay_program_waits_at_a_rung_for_the_launchers_word(tmp_path: Path) -> None:
    curve = {"time": [1.0, 2.0, 3.0, 4.0], "val_accuracy": [50.0, 60.0, 65.0, 70.0]}
    (tmp_path / "curves.json").write_text(json.dumps({"k": curve}))
    program = Path(__file__).resolve().parents[2] / "benchmarks" / "replay_epochs.py"
    command = [sys.executable, str(program), str(tmp_path / "curves.json"), "k", "0.01"]
    env = {**os.environ, "SWEEP_RUNG_EPOCHS": "2", "SWEEP_RUNG_WAIT_S": "60"}
    env.pop("SWEEP_STOP_AFTER_EPOCH", None)
    for word, epochs in (("stop", [1, 2]), ("go", [1, 2, 3, 4])):
        run_dir = tmp_path / word
        run_dir.mkdir()
        (run_dir / f"rung-2.{word}").write_text(f"{word}\n")  # the launcher's word, there already
        subprocess.run(command, env={**env, "SWEEP_RUN_DIR": str(run_dir)}, check=True, timeout=60)
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == epochs
