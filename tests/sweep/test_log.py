"""`sweep.log_epoch`: what a training program calls; a resumed epoch replaces its line, never doubles it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sweep import log_epoch
from tests.conftest import deadline
from trainer.errors import UserError
from trainer.metrics import read_epochs
from trainer.paths import RunPaths
from trainer.rung_word import RUNG_EPOCHS, RUNG_WAIT_S
from trainer.stop import STOP_AFTER_EPOCH


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


def test_a_rank_other_than_0_logs_nothing_but_pauses_with_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWEEP_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    log_epoch(1, val_acc=0.5)
    log_epoch(2, run_dir=tmp_path, val_acc=0.6)
    assert not (tmp_path / "metrics.jsonl").exists()
    monkeypatch.delenv("SWEEP_RUN_DIR")
    log_epoch(3, val_acc=0.7)  # by hand: rank 0 alone prints
    monkeypatch.setenv(STOP_AFTER_EPOCH, "4")
    with pytest.raises(SystemExit) as stopped:
        log_epoch(4, run_dir=tmp_path, val_acc=0.8)
    assert stopped.value.code == 0 and capsys.readouterr().err == ""
    assert not (tmp_path / "metrics.jsonl").exists()
    monkeypatch.delenv(STOP_AFTER_EPOCH)
    monkeypatch.setenv("RANK", "0")
    log_epoch(1, run_dir=tmp_path, val_acc=0.5)
    assert read_epochs(tmp_path / "metrics.jsonl") == [{"epoch": 1.0, "val_acc": 0.5}]


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


# Saves its checkpoint, then logs the epoch (the order log_epoch's docstring asks for), epochs 1..5.
PAUSING = """\
import os, pathlib
from sweep import log_epoch
run = pathlib.Path(os.environ["SWEEP_RUN_DIR"])
for epoch in range(1, 6):
    (run / "checkpoint.txt").write_text(str(epoch))
    log_epoch(epoch, val_acc=0.1 * epoch)
print("trained to the end")
"""


@pytest.mark.parametrize(
    ("stop", "epochs"), [("3", [1, 2, 3]), (None, [1, 2, 3, 4, 5]), ("9", [1, 2, 3, 4, 5])]
)
def test_a_program_exits_0_after_the_epoch_sweep_stop_after_epoch_names(
    tmp_path: Path, stop: str | None, epochs: list[int]
) -> None:
    env = {key: value for key, value in os.environ.items() if key != STOP_AFTER_EPOCH}
    env["SWEEP_RUN_DIR"] = str(tmp_path)
    if stop is not None:
        env[STOP_AFTER_EPOCH] = stop
    done = subprocess.run(
        [sys.executable, "-c", PAUSING], env=env, capture_output=True, text=True, timeout=deadline(60)
    )
    assert done.returncode == 0, done.stderr
    assert _epochs(tmp_path / "metrics.jsonl") == epochs
    assert (tmp_path / "checkpoint.txt").read_text() == str(epochs[-1])
    paused = epochs[-1] < 5
    assert ("trained to the end" in done.stdout) is not paused
    assert (f"sweep: paused after epoch 3 ({STOP_AFTER_EPOCH}=3)" in done.stderr) is paused


def test_log_epoch_pauses_at_or_past_the_epoch_by_sys_exit_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STOP_AFTER_EPOCH, "2")
    log_epoch(1, run_dir=tmp_path, acc=0.1)
    with pytest.raises(SystemExit) as stopped:
        log_epoch(2, run_dir=tmp_path, acc=0.2)
    assert stopped.value.code == 0
    with pytest.raises(SystemExit):  # a program resumed past its rung with the old value still set
        log_epoch(3, run_dir=tmp_path, acc=0.3)
    assert _epochs(tmp_path / "metrics.jsonl") == [1, 2, 3]  # each line written before the exit


@pytest.mark.parametrize("value", ["0", "three", "-2", "1.5"])
def test_a_bad_stop_epoch_is_one_line_naming_the_variable_and_nothing_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(STOP_AFTER_EPOCH, value)
    with pytest.raises(UserError) as raised:
        log_epoch(1, run_dir=tmp_path, acc=0.1)
    assert str(raised.value) == f"SWEEP_STOP_AFTER_EPOCH must be a positive integer (an epoch), got {value!r}"
    assert not (tmp_path / "metrics.jsonl").exists()


def _word_later(run_dir: Path, epoch: int, *, go: bool, after_s: float) -> dict[str, list[int]]:
    """Write the launcher's word on `epoch` after `after_s` s from a thread; the epochs logged by then."""
    seen: dict[str, list[int]] = {}

    def write() -> None:
        time.sleep(after_s)
        seen["epochs"] = _epochs(run_dir / "metrics.jsonl")
        RunPaths(run_dir).rung_word(epoch, go=go).write_text("word\n")

    threading.Thread(target=write, daemon=True).start()
    return seen


@pytest.fixture
def told_rungs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial of an asynchronous pruner: rungs at epochs 2 and 6, a wait long enough for any test."""
    monkeypatch.delenv(STOP_AFTER_EPOCH, raising=False)
    monkeypatch.setenv(RUNG_EPOCHS, "2,6")
    monkeypatch.setenv(RUNG_WAIT_S, str(deadline(60)))


@pytest.mark.usefixtures("told_rungs")
def test_log_epoch_waits_after_a_rung_epochs_line_until_the_word_go(tmp_path: Path) -> None:
    log_epoch(1, run_dir=tmp_path, acc=0.1)  # no rung: returns at once, though no word will come
    seen = _word_later(tmp_path, 2, go=True, after_s=0.3)
    log_epoch(2, run_dir=tmp_path, acc=0.2)
    # it went on only once the word was being written (`seen` is filled just before): it waited, and
    # the line was written before the wait, for the launcher to read
    assert seen["epochs"] == [1, 2]
    log_epoch(3, run_dir=tmp_path, acc=0.3)
    assert _epochs(tmp_path / "metrics.jsonl") == [1, 2, 3]


@pytest.mark.usefixtures("told_rungs")
def test_log_epoch_exits_0_at_the_word_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _word_later(tmp_path, 2, go=False, after_s=0.1)
    with pytest.raises(SystemExit) as stopped:
        log_epoch(2, run_dir=tmp_path, acc=0.2)
    assert stopped.value.code == 0
    assert (
        capsys.readouterr().err
        == f"sweep: stopped after rung epoch 2 ({RUNG_EPOCHS}): the trial was pruned\n"
    )
    assert _epochs(tmp_path / "metrics.jsonl") == [2]


@pytest.mark.usefixtures("told_rungs")
def test_log_epoch_goes_on_with_one_line_when_no_word_comes_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(RUNG_WAIT_S, "0.2")  # the launcher is down: no word will come
    started = time.monotonic()
    log_epoch(2, run_dir=tmp_path, acc=0.2)
    assert time.monotonic() - started >= 0.2
    assert capsys.readouterr().err == (
        f"sweep: no word from the launcher 0.2 s after rung epoch 2 ({RUNG_WAIT_S}); going on\n"
    )


@pytest.mark.usefixtures("told_rungs")
def test_every_rank_waits_for_the_word_and_only_rank_0_speaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    (tmp_path / "metrics.jsonl").write_text("")
    seen = _word_later(tmp_path, 6, go=False, after_s=0.3)
    with pytest.raises(SystemExit) as stopped:
        log_epoch(6, run_dir=tmp_path, acc=0.6)
    assert stopped.value.code == 0 and "epochs" in seen  # it stopped at the word, once it was written
    assert seen["epochs"] == [] and capsys.readouterr().err == ""  # rank 1 wrote and said nothing


@pytest.mark.usefixtures("told_rungs")
def test_by_hand_with_no_run_dir_log_epoch_never_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWEEP_RUN_DIR", raising=False)
    started = time.monotonic()
    log_epoch(2, acc=0.2)
    assert time.monotonic() - started < deadline(30)  # not the wait of told_rungs (60 s)
