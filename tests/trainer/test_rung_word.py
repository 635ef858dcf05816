"""`trainer.rung_word`: at a rung of an asynchronous pruner a run waits for the launcher's word (a file
in its run dir): go on, or stop; no word in time and it goes on, saying so. The trainer honours it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.conftest import deadline, tiny_config
from tests.trainer.test_distributed import _run_ranks
from trainer import run
from trainer.errors import UserError
from trainer.metrics import read_epochs
from trainer.paths import RunPaths
from trainer.rung_word import RUNG_EPOCHS, RUNG_WAIT_S, WAIT_S, RungContract, RungEpochs, rung_contract


def _word_later(run_dir: Path, epoch: int, *, go: bool, after_s: float) -> list[float]:
    """Write the launcher's word on `epoch` after `after_s` seconds, from a thread; the list gets the
    time just before the word is written (so a wait that ended finds it there: it waited, not timed)."""
    about_to_write: list[float] = []

    def write() -> None:
        time.sleep(after_s)
        about_to_write.append(time.monotonic())
        RunPaths(run_dir).rung_word(epoch, go=go).write_text("go\n" if go else "stop\n")

    threading.Thread(target=write, daemon=True).start()
    return about_to_write


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("2,6,18", [2, 6, 18], [1, 3, 5, 17, 19, 54]),
        ("5-51", [5, 6, 30, 51], [4, 52]),
        ("5-", [5, 6, 1000], [1, 4]),
        (" 1 , 3-4 ", [1, 3, 4], [2, 5]),
    ],
)
def test_the_variable_names_epochs_spans_and_open_spans(
    text: str, inside: list[int], outside: list[int]
) -> None:
    epochs = RungEpochs.parse(text)
    assert all(epoch in epochs for epoch in inside)
    assert not any(epoch in epochs for epoch in outside)
    assert RungEpochs.parse(str(epochs)) == epochs  # what the launcher writes, read back the same


@pytest.mark.parametrize("text", ["0", "two", "6-2", "2,,6", "1.5", "-3", "3-x"])
def test_a_bad_value_is_one_line_naming_the_variable(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNG_EPOCHS, text)
    with pytest.raises(UserError, match=f"^{RUNG_EPOCHS} must be epochs separated by commas"):
        rung_contract()


def test_the_wait_defaults_to_minutes_and_may_be_set_or_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNG_EPOCHS, raising=False)
    assert rung_contract() is None  # told nothing: waits nowhere
    monkeypatch.setenv(RUNG_EPOCHS, "2")
    monkeypatch.delenv(RUNG_WAIT_S, raising=False)
    assert rung_contract() == RungContract(RungEpochs(((2, 2),)), WAIT_S) and WAIT_S >= 60
    monkeypatch.setenv(RUNG_WAIT_S, "0")
    assert rung_contract() == RungContract(RungEpochs(((2, 2),)), 0.0)
    for bad in ("-1", "soon", "inf"):
        monkeypatch.setenv(RUNG_WAIT_S, bad)
        with pytest.raises(UserError, match=f"^{RUNG_WAIT_S} must be a number of seconds >= 0"):
            rung_contract()


def test_a_run_waits_at_a_rung_until_the_word_go(tmp_path: Path) -> None:
    contract = RungContract(RungEpochs.parse("2"), wait_s=deadline(30))
    about_to_write = _word_later(tmp_path, 2, go=True, after_s=0.3)
    assert contract.go_on(tmp_path, 2) is True
    assert about_to_write  # it went on only once the word was being written: it waited for it


def test_the_word_stop_ends_the_wait_with_false(tmp_path: Path) -> None:
    contract = RungContract(RungEpochs.parse("2"), wait_s=deadline(30))
    _word_later(tmp_path, 2, go=False, after_s=0.2)
    assert contract.go_on(tmp_path, 2) is False


def test_no_word_in_time_goes_on_with_one_line_and_an_epoch_that_is_no_rung_never_waits(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    contract = RungContract(RungEpochs.parse("2,6"), wait_s=0.2)
    started = time.monotonic()
    assert contract.go_on(tmp_path, 2, say=said.append) is True
    assert time.monotonic() - started >= 0.2
    assert said == [f"sweep: no word from the launcher 0.2 s after rung epoch 2 ({RUNG_WAIT_S}); going on"]
    patient = RungContract(RungEpochs.parse("2,6"), wait_s=deadline(60))
    started = time.monotonic()
    assert patient.go_on(tmp_path, 3, say=said.append) is True  # no rung: no wait, no line
    assert RungContract(RungEpochs.parse("3"), wait_s=0).go_on(tmp_path, 3, say=said.append)  # 0: no wait
    assert time.monotonic() - started < deadline(30) and len(said) == 1  # not the 60 s of a wait


def test_the_trainer_waits_at_its_rung_and_goes_on_at_the_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RUNG_EPOCHS, "1")
    monkeypatch.setenv(RUNG_WAIT_S, str(deadline(60)))
    paths = RunPaths(tmp_path / "run")
    go = paths.rung_word(1, go=True)
    stamps: dict[str, float] = {}

    def answer_when_epoch_1_is_logged() -> None:
        while not (paths.metrics.exists() and read_epochs(paths.metrics)):
            time.sleep(0.01)
        time.sleep(0.5)  # a slow launcher: the run must not have trained on meanwhile
        stamps["lines then"] = len(read_epochs(paths.metrics))
        stamps["go"] = time.time()
        go.write_text("go\n")

    thread = threading.Thread(target=answer_when_epoch_1_is_logged, daemon=True)
    thread.start()
    result = run(tiny_config(epochs=2), paths.run_dir, progress=False)
    thread.join(timeout=deadline(10))
    assert stamps["lines then"] == 1
    assert result.epochs == 2 and paths.result.exists()
    # epoch 2 began after the word: its line's time less its own seconds (without the wait it would
    # have begun half a second before the word)
    second = read_epochs(paths.metrics)[1]
    assert paths.metrics.stat().st_mtime - second["epoch_seconds"] >= stamps["go"] - 0.05


def test_the_trainer_stops_at_the_word_stop_with_its_checkpoint_and_no_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(RUNG_EPOCHS, "1,2")
    monkeypatch.setenv(RUNG_WAIT_S, str(deadline(60)))
    paths = RunPaths(tmp_path / "run")
    paths.run_dir.mkdir()
    paths.rung_word(1, go=False).write_text("stop\n")  # the launcher pruned it at its first rung
    result = run(tiny_config(epochs=3), paths.run_dir, progress=True)
    assert result.epochs == 1 and [int(e["epoch"]) for e in read_epochs(paths.metrics)] == [1]
    assert paths.checkpoint.exists() and not paths.result.exists()
    assert (
        f"stopped after epoch 1 of 3 ({RUNG_EPOCHS}): the trial was pruned at this rung"
        in capsys.readouterr().out
    )


@pytest.mark.slow
def test_two_ranks_wait_for_rank_0s_word_and_stop_together(tmp_path: Path) -> None:
    """Rank 0 reads the word; rank 1 waits for rank 0 in an all-reduce: neither trains on, none hangs."""
    run_dir = tmp_path / "two"
    paths = RunPaths(run_dir)

    def stop_once_epoch_1_is_logged() -> None:
        while not (paths.metrics.exists() and read_epochs(paths.metrics)):
            time.sleep(0.01)
        time.sleep(0.3)
        paths.rung_word(1, go=False).write_text("stop\n")

    threading.Thread(target=stop_once_epoch_1_is_logged, daemon=True).start()
    config = tiny_config(loader="gpu", epochs=3, batch_size=48)
    _run_ranks(config, run_dir, 2, **{RUNG_EPOCHS: "1", RUNG_WAIT_S: str(deadline(60))})  # both exit 0
    assert [int(e["epoch"]) for e in read_epochs(paths.metrics)] == [1] and not paths.result.exists()
