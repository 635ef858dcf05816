"""The asynchronous pruners' rung word (`sweep.launcher.rung_words`): the epochs a trial's program is
told to wait at, the word the launcher writes there, and how soon the launcher reads a trial due at one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sweep.executors.job import TrainJob
from sweep.launcher.rung_words import RUNG_READ_S, answer, read_pause, say, told_rungs, with_rungs
from sweep.launcher.watched import Watched
from sweep.study.parse import load_toml
from sweep.study.spec import StudySpec
from trainer.paths import RunPaths
from trainer.rung_word import RungEpochs


def _spec(tmp_path: Path, pruner: str, warmup: int | None = 2, epochs: str = "epochs = 20") -> StudySpec:
    path = tmp_path / "rungs.toml"
    warm = "" if warmup is None else f"pruner_warmup_epochs = {warmup}\n"
    path.write_text(
        f'[study]\nname = "rungs"\nsampler = "grid"\npruner = "{pruner}"\n{warm}'
        f"[train]\n{epochs}\n[space]\nlr = [0.1, 0.2]\n"
    )
    return load_toml(path)


@pytest.mark.parametrize(
    ("pruner", "warmup", "told"),
    [
        ("successive_halving", 2, "2,6,18"),  # warmup x 3^k below the trial's 20 epochs
        ("hyperband", 2, "2,6,18"),  # every bracket's rungs: a trial of another bracket is told go at once
        ("successive_halving", None, "1,3,9"),  # warmup 0 is 1
        ("median", 5, "5-19"),  # the median pruner decides at every epoch from its warm-up on
        ("median", None, "1-19"),
    ],
)
def test_each_asynchronous_pruner_tells_the_epochs_it_decides_at(
    tmp_path: Path, pruner: str, warmup: int | None, told: str
) -> None:
    spec = _spec(tmp_path, pruner, warmup)
    assert str(told_rungs(spec, {"epochs": 20}, "local")) == told
    assert str(told_rungs(spec, {"epochs": 20}, "slurm")) == told


def test_no_rung_word_without_an_asynchronous_pruner_nor_for_a_debug_job(tmp_path: Path) -> None:
    assert told_rungs(_spec(tmp_path, "successive_halving"), {"epochs": 20}, "debug") is None  # in-process
    assert told_rungs(_spec(tmp_path, "none", None), {"epochs": 20}, "local") is None
    assert (
        told_rungs(_spec(tmp_path, "synchronous_halving"), {"epochs": 20}, "local") is None
    )  # its own pause
    assert (
        told_rungs(_spec(tmp_path, "successive_halving"), {"epochs": 2}, "local") is None
    )  # no rung below 2


def test_a_trial_of_unknown_epochs_is_told_the_rungs_of_any_length(tmp_path: Path) -> None:
    halving = told_rungs(_spec(tmp_path, "successive_halving", 2, ""), {}, "local")
    assert halving is not None and 2 in halving and 2 * 3**9 in halving and 3 not in halving
    median = told_rungs(_spec(tmp_path, "median", 3, ""), {}, "local")
    assert str(median) == "3-" and 10**6 in median and 2 not in median


def test_a_job_is_told_its_rungs_as_the_variables_text_and_the_launchers_own_job_is_left_as_it_was() -> None:
    job = TrainJob()
    told = with_rungs(job, RungEpochs.parse("2,6,18"))
    assert told.rung_epochs == "2,6,18" and job.rung_epochs is None
    assert with_rungs(job, None) is job

    def bare(config: dict[str, Any], run_dir: str) -> None:
        pass

    assert with_rungs(bare, RungEpochs.parse("2")) is bare  # a job function that has no rung_epochs


def _watched(tmp_path: Path, rungs: str | None, reported: int) -> Watched:
    nothing: Any = None  # answer and say read only the rungs, the epochs and the run dir
    return Watched(
        nothing,
        nothing,
        {"epochs": 20},
        tmp_path,
        reported,
        rungs=None if rungs is None else RungEpochs.parse(rungs),
    )


def test_the_launcher_says_go_for_the_rung_epoch_logged_last_once_it_reported_it(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    item = _watched(tmp_path, "2,6", reported=1)
    answer(item, [{"epoch": 1.0}, {"epoch": 2.0}], done=False)
    assert not paths.rung_word(2, go=True).exists()  # not reported yet: the pruner has not decided
    item.reported = 2
    answer(item, [{"epoch": 1.0}, {"epoch": 2.0}], done=False)
    assert paths.rung_word(2, go=True).read_text() == "go\n" and item.answered == 2
    paths.rung_word(2, go=True).unlink()
    answer(item, [{"epoch": 1.0}, {"epoch": 2.0}], done=False)
    assert not paths.rung_word(2, go=True).exists()  # said once
    item.reported = 3
    answer(item, [{"epoch": 3.0}], done=False)  # no rung
    answer(_watched(tmp_path, "2,6", reported=6), [{"epoch": 6.0}], done=True)  # its job ended
    answer(_watched(tmp_path, None, reported=6), [{"epoch": 6.0}], done=False)  # told no rungs
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_a_pruned_trial_is_told_stop_at_its_rung(tmp_path: Path) -> None:
    item = _watched(tmp_path, "2,6", reported=6)
    say(item, 6, go=False)
    say(item, 7, go=False)  # no rung: no word
    assert [path.name for path in tmp_path.iterdir()] == ["rung-6.stop"]


def test_the_loop_reads_sooner_while_a_trials_next_epoch_is_a_rung(tmp_path: Path) -> None:
    due, past, plain = (
        _watched(tmp_path, "2,6", reported=1),
        _watched(tmp_path, "2,6", reported=2),
        _watched(tmp_path, None, reported=1),
    )
    assert read_pause([due, plain], 0.5) == RUNG_READ_S < 0.5
    assert read_pause([past, plain], 0.5) == 0.5
    assert read_pause([due], 0.05) == 0.05  # never slower than asked
