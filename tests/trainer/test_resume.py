"""SIGKILL a real training process in epoch 2, start it again, compare with an uninterrupted run."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import deadline, tiny_config
from trainer import UserError, run
from trainer.checkpoint import best_path
from trainer.cli import main
from trainer.paths import RunPaths
from trainer.stop import STOP_AFTER_EPOCH, stop_after_epoch

FLAGS = [
    "--dataset", "fake", "--depth", "20", "--epochs", "3", "--batch-size", "32", "--lr", "0.05",
    "--fake-train-size", "640", "--val-size", "64", "--num-workers", "0", "--device", "cpu", "--seed", "7",
]  # fmt: skip
TIMING_KEYS = {"epoch_seconds", "images_per_second"}
DEADLINE_SECONDS = deadline(120)


def _trainer(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "trainer", *FLAGS, "--run-dir", str(run_dir)]


def _without_timings(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in TIMING_KEYS} for line in lines]


def _epochs_done(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_sigkill_in_epoch_2_then_restart_resumes_at_epoch_2_with_identical_metrics(tmp_path: Path) -> None:
    reference = RunPaths(tmp_path / "uninterrupted")
    subprocess.run(_trainer(reference.run_dir), check=True, capture_output=True, timeout=DEADLINE_SECONDS)

    interrupted = RunPaths(tmp_path / "interrupted")
    process = subprocess.Popen(
        _trainer(interrupted.run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    give_up_at = time.monotonic() + DEADLINE_SECONDS
    while _epochs_done(interrupted.metrics) < 1:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < give_up_at, "epoch 1 never finished"
        time.sleep(0.01)
    time.sleep(0.2)  # well inside epoch 2, which takes about a second here
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=deadline(10))
    assert process.returncode == -signal.SIGKILL
    assert _epochs_done(interrupted.metrics) == 1, (
        "epoch 2 finished before the kill; the test did not kill mid-epoch"
    )
    assert torch.load(interrupted.checkpoint, weights_only=True)["epoch"] == 1

    resumed = subprocess.run(
        _trainer(interrupted.run_dir), check=True, capture_output=True, text=True, timeout=DEADLINE_SECONDS
    )
    assert "resuming at epoch 2 (1 of 3 done)" in resumed.stdout
    epoch_lines = [line for line in resumed.stdout.splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in epoch_lines] == ["2/3", "3/3"]  # epoch 1 is not trained again

    # Same seed on the CPU: the resumed run computes bit for bit what the uninterrupted one did.
    assert _without_timings(interrupted.metrics) == _without_timings(reference.metrics)
    final = json.loads(interrupted.result.read_text())
    expected = json.loads(reference.result.read_text())
    assert {k: v for k, v in final.items() if k != "train_seconds"} == {
        k: v for k, v in expected.items() if k != "train_seconds"
    }
    # The resumed run knew the best epoch so far: best.pt holds the same epoch and the same weights.
    best, best_expected = (
        torch.load(best_path(p.run_dir), weights_only=True) for p in (interrupted, reference)
    )
    assert best["epoch"] == best_expected["epoch"] == final["best_epoch"]
    assert all(torch.equal(best["model"][k], best_expected["model"][k]) for k in best_expected["model"])


class _CtrlCAfter(io.StringIO):
    """stdout that raises KeyboardInterrupt once the run prints `line`: a Ctrl-C right after that epoch
    was checkpointed, in this process (the test above kills a real one, slowly)."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line

    def write(self, text: str) -> int:
        written = super().write(text)
        if text.startswith(self.line):
            raise KeyboardInterrupt
        return written


# the fast subset keeps adam (two state tensors a parameter); sgd's momentum runs with the slow tests
@pytest.mark.parametrize("optimizer", [pytest.param("sgd", marks=pytest.mark.slow), "adam"])
def test_a_resumed_run_restores_optimizer_and_schedule_and_continues_as_if_never_stopped(
    tmp_path: Path, optimizer: str
) -> None:
    """Momentum (or Adam's moments) and the cosine schedule's step come back from checkpoint.pt: a run
    stopped after epoch 1 and started again logs what an uninterrupted one does, bit for bit on a CPU."""
    config = tiny_config(epochs=3, optimizer=optimizer, schedule="cosine", lr=0.05)
    reference = RunPaths(tmp_path / "uninterrupted")
    run(config, reference.run_dir, progress=False)

    interrupted = RunPaths(tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt), contextlib.redirect_stdout(_CtrlCAfter("epoch 1/3")):
        run(config, interrupted.run_dir)
    stopped = torch.load(interrupted.checkpoint, weights_only=True)
    assert stopped["epoch"] == 1 and stopped["optimizer"]["state"] and stopped["schedule"]["last_epoch"] == 1
    run(config, interrupted.run_dir, progress=False)

    assert _without_timings(interrupted.metrics) == _without_timings(reference.metrics)
    lrs = [line["lr"] for line in _without_timings(interrupted.metrics)]
    assert lrs == pytest.approx([0.05, 0.0375, 0.0125])  # cosine over 3 epochs, not restarted at epoch 2
    final, expected = (torch.load(p.checkpoint, weights_only=True) for p in (interrupted, reference))
    assert final["schedule"] == expected["schedule"]
    for key, state in expected["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(final["optimizer"]["state"][key][name], value), (key, name)
    assert all(torch.equal(final["model"][key], value) for key, value in expected["model"].items())


@pytest.mark.slow
def test_a_run_paused_at_epochs_2_and_6_by_the_variable_logs_what_an_uninterrupted_run_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 33's rungs: SWEEP_STOP_AFTER_EPOCH=2, then 6, then unset, on one run dir, give the curve
    of one uninterrupted 10-epoch run: the cosine schedule follows the 10 epochs, never the pause."""
    config = tiny_config(epochs=10, schedule="cosine", lr=0.05, seed=3, evaluate_test=True)
    monkeypatch.delenv(STOP_AFTER_EPOCH, raising=False)
    reference = RunPaths(tmp_path / "uninterrupted")
    run(config, reference.run_dir, progress=False)

    paused = RunPaths(tmp_path / "paused")
    monkeypatch.setenv(STOP_AFTER_EPOCH, "2")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        first = run(config, paused.run_dir)
    assert first.epochs == 2 and first.test_acc is None  # the epochs done so far, no test evaluation
    assert "paused after epoch 2 of 10 (SWEEP_STOP_AFTER_EPOCH=2)" in out.getvalue()
    assert torch.load(paused.checkpoint, weights_only=True)["epoch"] == 2
    assert _epochs_done(paused.metrics) == 2 and best_path(paused.run_dir).exists()
    assert not paused.result.exists()  # paused, not finished

    monkeypatch.setenv(STOP_AFTER_EPOCH, "6")
    assert run(config, paused.run_dir, progress=False).epochs == 6
    assert _epochs_done(paused.metrics) == 6 and not paused.result.exists()
    monkeypatch.delenv(STOP_AFTER_EPOCH)
    final = run(config, paused.run_dir, progress=False)

    assert _without_timings(paused.metrics) == _without_timings(reference.metrics)
    lrs = [line["lr"] for line in _without_timings(paused.metrics)]
    cosine = [0.05 * (1 + math.cos(math.pi * epoch / 10)) / 2 for epoch in range(10)]
    assert lrs == pytest.approx(cosine)  # over the 10 epochs, not restarted at either rung
    assert _without_timings(paused.metrics)[-1]["test_acc"] is not None  # only at the real last epoch
    expected = json.loads(reference.result.read_text())
    assert final.epochs == 10
    assert {k: v for k, v in json.loads(paused.result.read_text()).items() if k != "train_seconds"} == {
        k: v for k, v in expected.items() if k != "train_seconds"
    }
    ours, theirs = (torch.load(p.checkpoint, weights_only=True) for p in (paused, reference))
    assert all(torch.equal(ours["model"][key], value) for key, value in theirs["model"].items())


@pytest.mark.parametrize("value", ["1", "5"])
def test_a_stop_at_or_past_the_last_epoch_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(STOP_AFTER_EPOCH, value)
    paths = RunPaths(tmp_path / "run")
    result = run(tiny_config(epochs=1, evaluate_test=True), paths.run_dir, progress=False)
    assert result.epochs == 1 and result.test_acc is not None and paths.result.exists()


@pytest.mark.parametrize("value", ["0", "-1", "two", "2.5", " "])
def test_a_bad_stop_epoch_is_one_line_naming_the_variable_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv(STOP_AFTER_EPOCH, value)
    if not value.strip():  # set but empty: as unset
        assert stop_after_epoch() is None
        return
    with pytest.raises(UserError) as raised:
        run(tiny_config(), tmp_path / "run", progress=False)
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert message == f"SWEEP_STOP_AFTER_EPOCH must be a positive integer (an epoch), got {value!r}"
    assert not (tmp_path / "run").exists()
    # `python -m trainer`: exit 2 and that one `error:` line
    flags = ["--dataset", "fake", "--depth", "8", "--epochs", "1", "--device", "cpu"]
    assert main([*flags, "--run-dir", str(tmp_path / "cli")]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
