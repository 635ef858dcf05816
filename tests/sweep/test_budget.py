"""The GPU-hour budget: hours used plus the running trials' expected hours against the limit, on a real
SQLite study whose trials' hours come from hand-written manifests (local jobs); no job runs."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.errors import SweepError
from sweep.gpu_hours import TrialHours
from sweep.launcher import budget
from trainer.manifest import Attempt

START = datetime(2026, 1, 1, tzinfo=UTC)
EMPTY = {field.name: None for field in dataclasses.fields(Attempt)}  # a manifest attempt, times only


def _hours(number: int, state: TrialState, used: float) -> TrialHours:
    return TrialHours(number, state.name, used, 0.0, 1, "manifest")


def test_running_trials_are_expected_to_cost_the_complete_ones_mean_less_what_they_used() -> None:
    items = [
        _hours(0, TrialState.COMPLETE, 1.0),
        _hours(1, TrialState.COMPLETE, 3.0),  # the typical trial: 2.0
        _hours(2, TrialState.PRUNED, 0.5),  # used, expects nothing more
        _hours(3, TrialState.RUNNING, 0.5),  # 1.5 to go
        _hours(4, TrialState.RUNNING, 2.5),  # past the typical: nothing more
    ]
    spent = budget.spent(items, limit=10.0)
    assert (spent.used, spent.expected, spent.left) == (7.5, 1.5, 2.5)
    assert not spent.reached
    nothing_complete = budget.spent([_hours(0, TrialState.RUNNING, 0.25)], limit=1.0)
    assert (nothing_complete.used, nothing_complete.expected) == (0.25, 0.0)


@pytest.mark.parametrize(
    ("used", "expected", "limit", "reached"),
    [
        (0.5, 0.25, 0.75, True),  # used + expected equal to the limit: stop
        (0.75, 0.0, 0.75, True),  # used alone reaches it
        (0.5, 0.25, 0.8125, False),  # just below
        (1.0, 0.0, 0.75, True),  # past it: nothing left
    ],
)
def test_the_budget_is_reached_when_used_plus_expected_reach_the_limit(
    used: float, expected: float, limit: float, reached: bool
) -> None:
    spent = budget.Spent(limit=limit, used=used, expected=expected)
    assert spent.reached is reached
    assert spent.left == max(0.0, limit - used)


def _study(tmp_path: Path, complete_hours: list[float], running: int) -> optuna.Study:
    """A study of COMPLETE local trials that each ran one attempt of the given hours (in their manifest),
    then `running` RUNNING trials with no attempt yet (no GPU-hours used so far)."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'sweep.db'}", direction="maximize")
    for number, hours in enumerate(complete_hours):
        run_dir = tmp_path / str(number)
        run_dir.mkdir()
        attempt = {
            **EMPTY,
            "number": 1,
            "started": START.isoformat(),
            "ended": (START + timedelta(hours=hours)).isoformat(),
        }
        (run_dir / "manifest.json").write_text(json.dumps({"attempts": [attempt]}))
        attrs = {"config": number, "run_dir": str(run_dir), "executor": "local"}
        study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs=attrs))
    for index in range(running):
        trial = study.ask()
        trial.set_user_attr("config", len(complete_hours) + index)
        trial.set_user_attr("executor", "local")
    return study


@pytest.mark.parametrize(("limit", "stops"), [(4.5, True), (4.0, True), (4.75, False)])
def test_a_launchers_budget_stops_new_trials_at_used_plus_expected(
    tmp_path: Path, limit: float, stops: bool
) -> None:
    # 2 GPUs per trial: 1.0 + 2.0 GPU-hours used; the running trial is expected to cost their mean, 1.5
    study = _study(tmp_path, [0.5, 1.0], running=1)
    lines: list[str] = []
    gate = budget.Budget(limit, gpus=2, name="b", out=lines.append)
    assert gate.stops(study) is stops
    assert gate.stops(study) is stops  # asked again: said once
    if stops:
        assert lines == [
            f"b: GPU-hour budget reached (3.000 used + 1.500 expected for the running trials >= {limit:g}); "
            "starting no new trial, the running ones finish. "
            "`sweep launch --budget-gpu-hours MORE` continues the study"
        ]
    else:
        assert lines == []


def test_a_budget_that_stopped_stays_stopped(tmp_path: Path) -> None:
    study = _study(tmp_path, [1.0], running=1)
    gate = budget.Budget(3.0, gpus=1, name="b", out=lambda _: None)  # 1 used + 1 expected: 1 left
    assert not gate.stops(study)
    more = study.ask()
    more.set_user_attr("config", 9)
    more.set_user_attr("executor", "local")  # another trial started: 1 + 1 + 1 reaches 3
    assert gate.stops(study)
    study.tell(more, state=TrialState.FAIL)  # a stop is not taken back when a trial leaves
    assert gate.stops(study)


@pytest.mark.parametrize(
    ("limit", "gpus", "message"),
    [
        (0.0, 1, "--budget-gpu-hours is 0.0; give a number of GPU-hours > 0"),
        (-1.0, 1, "--budget-gpu-hours is -1.0; give a number of GPU-hours > 0"),
        (float("nan"), 1, "--budget-gpu-hours is nan; give a number"),
        (1.0, 0, "--budget-gpu-hours is set but \\[resources\\] gpus is 0"),
    ],
)
def test_a_budget_that_is_no_positive_number_or_on_no_gpus_is_refused(
    limit: float, gpus: int, message: str
) -> None:
    with pytest.raises(SweepError, match=message):
        budget.check_budget(limit, gpus, "--budget-gpu-hours")
    budget.check_budget(None, 0, "--budget-gpu-hours")  # no budget: nothing to check
    budget.check_budget(0.5, 1, "--budget-gpu-hours")
