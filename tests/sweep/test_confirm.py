"""Confirmation of the winners ([study] confirm_top, confirm_repeats): once the search is done, the best
configurations run again with further seeds, and the report names the search's and the confirmed winner."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from sweep.errors import SweepError
from sweep.launcher import launch
from sweep.report import report
from sweep.store.records import TrialRecord
from sweep.study import load_study
from sweep.study.plan import missing_trials
from tests.conftest import deadline
from tests.sweep.conftest import TINY_TRAIN, run_sweep, write_study
from trainer.metrics import EpochMetrics
from trainer.paths import RunPaths

# The search's seed (repeat 0) ranks lr 0.4 first and 0.3 second; further seeds pull 0.4 down.
SEARCH = {0.1: 0.60, 0.2: 0.70, 0.3: 0.80, 0.4: 0.90}
LATER = {0.1: 0.60, 0.2: 0.70, 0.3: 0.80, 0.4: 0.50}


def seeded_job(config: dict[str, Any], run_dir: str) -> None:
    """A trial that trains nothing: val_acc from the lr, a lucky first seed for lr 0.4."""
    accuracy = (SEARCH if config["seed"] == 0 else LATER)[config["lr"]]
    record = EpochMetrics(1, 1.0, accuracy, 1.0, accuracy, 0.0, 0.0, 0.0)
    RunPaths(Path(run_dir)).metrics.write_text(record.to_json() + "\n")


def _grid(tmp_path: Path, **study: Any) -> Path:
    return write_study(
        tmp_path / "confirm.toml",
        study={"sampler": "grid", "confirm_top": 2, "confirm_repeats": 2, **study},
        train={**TINY_TRAIN, "epochs": 1},
        space={"lr": list(SEARCH)},
    )


def test_the_two_best_run_two_further_seeds_after_the_grid_and_the_report_names_both_winners(
    tmp_path: Path,
) -> None:
    spec = load_study(_grid(tmp_path))
    results = tmp_path / "results"
    lines: list[str] = []
    launch(spec, results_dir=results, executor="debug", job=seeded_job, out=lines.append)
    trials = optuna.load_study(study_name="confirm", storage=f"sqlite:///{results / 'sweep.db'}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    records = [TrialRecord.of(t) for t in trials]
    assert [r.confirm for r in records] == [False] * 4 + [True] * 4  # after the grid, none before
    confirmed = sorted((t.params["lr"], TrialRecord.of(t).repeat) for t in trials[4:])
    assert confirmed == [(0.3, 1), (0.3, 2), (0.4, 1), (0.4, 2)]
    seeds = {json.loads((RunPaths(r.run_dir).config).read_text())["seed"] for r in records[4:] if r.run_dir}
    assert seeds == {1, 2}  # each confirmation seed differs from the search's

    out = report(study="confirm", results_dir=results)
    assert "the search's winner was LR 0.4 (val_acc 90.00% over 1 seed)" in out
    assert "the best 2 were run with 2 further seeds each" in out
    assert "the confirmed winner is LR 0.3 (mean val_acc 80.00% over 3 seeds)" in out
    assert "They differ" in out
    rows = [line for line in out.splitlines() if line.startswith("| ")][1:]
    assert rows[0].startswith("| **0.3** | **3** |")  # ranked by the mean over all seeds: 0.3 first
    assert rows[2].startswith("| 0.4 | 3 | ") and "63.33 ±" in rows[2]  # (0.9 + 0.5 + 0.5) / 3

    again: list[str] = []
    launch(spec, results_dir=results, executor="debug", job=seeded_job, out=again.append)
    assert not [line for line in again if "submitted" in line]  # confirmed once, not again


def test_confirmation_waits_for_the_whole_search_and_keeps_its_choice(tmp_path: Path) -> None:
    spec = load_study(_grid(tmp_path))
    results = tmp_path / "results"
    launch(spec, results_dir=results, executor="debug", job=seeded_job, out=lambda _: None)
    study = optuna.load_study(study_name="confirm", storage=f"sqlite:///{results / 'sweep.db'}")
    trials = study.get_trials(deepcopy=False)
    # With one search trial still running, nothing is confirmed; a confirmation trial lost (FAILed)
    # is planned again for the same configuration, however the others rank.
    last = copy.deepcopy(trials[3])
    last.state = TrialState.RUNNING
    assert missing_trials(spec, [*trials[:3], last]) == []
    assert [item.confirm for item in missing_trials(spec, trials[:4])] == [True] * 4
    failed = [*trials[:7], optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=trials[7].user_attrs)]
    (item,) = missing_trials(spec, failed)
    assert item.confirm and (item.config, item.repeat) == (TrialRecord.of(trials[7]).config, 2)


@pytest.mark.parametrize(
    ("study", "fragment"),
    [
        ({"confirm_top": 2}, "key 'confirm_top' needs 'confirm_repeats' too"),
        ({"confirm_top": 5, "confirm_repeats": 1}, "key 'confirm_top' is 5 but the study runs 4"),
        ({"confirm_top": 0, "confirm_repeats": 1}, "key 'confirm_top' is 0; give an integer >= 1"),
    ],
)
def test_bad_confirm_keys_name_the_key_and_the_fix(
    tmp_path: Path, study: dict[str, Any], fragment: str
) -> None:
    path = write_study(tmp_path / "bad.toml", study={"sampler": "grid", **study}, space={"lr": list(SEARCH)})
    with pytest.raises(SweepError, match=fragment):
        load_study(path)


@pytest.mark.slow
def test_a_grid_on_the_local_executor_runs_exactly_four_confirmation_trials_after_it(tmp_path: Path) -> None:
    path = write_study(
        tmp_path / "local.toml",
        study={"name": "local", "sampler": "grid", "confirm_top": 2, "confirm_repeats": 2},
        train={**TINY_TRAIN, "epochs": 1},
        space={"lr": [0.01, 0.05, 0.2]},
    )
    results = tmp_path / "results"
    args = ("--study", str(path), "--results-dir", str(results))
    done = run_sweep("launch", *args, "--executor", "local", "--parallel", "2", timeout=deadline(600))
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name="local", storage=f"sqlite:///{results / 'sweep.db'}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 7
    search, confirm = trials[:3], trials[3:]
    assert not any(TrialRecord.of(t).confirm for t in search) and all(
        TrialRecord.of(t).confirm for t in confirm
    )
    assert max(t.datetime_complete for t in search) <= min(
        t.datetime_start for t in confirm
    )  # after the grid
    ranked = sorted(search, key=lambda t: -(t.value or 0.0))
    assert {t.params["lr"] for t in confirm} == {t.params["lr"] for t in ranked[:2]}
    out = run_sweep("report", *args)
    assert out.returncode == 0, out.stderr
    assert "the search's winner was LR" in out.stdout and "the confirmed winner is LR" in out.stdout


# A minimized metric: the search's seed ranks lr 0.4 lowest and 0.3 next; further seeds pull 0.4 up.
SEARCH_LOSS = {0.1: 0.90, 0.2: 0.70, 0.3: 0.60, 0.4: 0.40}
LATER_LOSS = {0.1: 0.90, 0.2: 0.70, 0.3: 0.60, 0.4: 1.00}


def seeded_loss_job(config: dict[str, Any], run_dir: str) -> None:
    """A trial that trains nothing: val_loss from the lr (a lucky first seed for lr 0.4), val_acc alike."""
    loss = (SEARCH_LOSS if config["seed"] == 0 else LATER_LOSS)[config["lr"]]
    record = EpochMetrics(1, 1.0, 0.5, loss, 0.5, 0.0, 0.0, 0.0)
    RunPaths(Path(run_dir)).metrics.write_text(record.to_json() + "\n")


def test_a_minimized_study_confirms_its_lowest_two_and_its_report_ranks_the_lowest_first(
    tmp_path: Path,
) -> None:
    spec = load_study(_grid(tmp_path, metric="val_loss"))
    assert spec.direction == "minimize"
    results = tmp_path / "results"
    lines: list[str] = []
    launch(spec, results_dir=results, executor="debug", job=seeded_loss_job, out=lines.append)
    trials = optuna.load_study(study_name="confirm", storage=f"sqlite:///{results / 'sweep.db'}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    assert [t.value for t in trials[:4]] == list(SEARCH_LOSS.values())
    confirmed = sorted((t.params["lr"], TrialRecord.of(t).repeat) for t in trials[4:])
    assert confirmed == [(0.3, 1), (0.3, 2), (0.4, 1), (0.4, 2)]  # the two lowest, not the two highest
    assert "confirm: 8 trials (8 complete); best trial 3 val_loss 0.4000 lr=0.4" in lines

    out = report(study="confirm", results_dir=results)
    assert "the search's winner was LR 0.4 (val_loss 0.40000 over 1 seed)" in out
    assert "the confirmed winner is LR 0.3 (mean val_loss 0.60000 over 3 seeds)" in out
    assert "**Bold**: the best configuration (lowest mean val_loss). Rows ranked by the mean." in out
    rows = [line for line in out.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0].strip("|* ") for row in rows] == ["0.3", "0.2", "0.4", "0.1"]  # lowest first
    assert rows[0].startswith("| **0.3** | **3** |") and "**0.60000 ± 0.00000**" in rows[0]
    assert not any("**" in row for row in rows[1:])  # one best row
    assert "0.80000 ±" in rows[2]  # lr 0.4: (0.4 + 1.0 + 1.0) / 3
