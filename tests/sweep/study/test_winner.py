"""The winner by mean (`sweep.study.winner`): one rule, one tie-break, and the places that name a winner
(the chained study's base, the choice of what to confirm, the report) agreeing on tied configurations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.storages import RDBStorage

from sweep import base
from sweep.report import report
from sweep.store.storage import default_url
from sweep.study import load_study
from sweep.study.plan import top_configs
from sweep.study.winner import Mean, best, ranked
from tests.sweep.conftest import write_study


def test_the_best_mean_first_in_either_direction() -> None:
    values = {0: [0.5, 0.7], 1: [0.9], 2: [0.1, 0.2]}
    assert [m.config for m in ranked(values, "maximize")] == [1, 0, 2]
    assert [m.config for m in ranked(values, "minimize")] == [2, 0, 1]
    assert best(values, "maximize") == Mean(config=1, value=0.9, n=1)


def test_equal_means_go_to_more_finished_runs_then_to_the_lower_configuration_number() -> None:
    values = {3: [0.8], 2: [0.8, 0.8], 1: [0.8], 0: [0.6, 1.0]}
    assert [(m.config, m.n) for m in ranked(values, "maximize")] == [(0, 2), (2, 2), (1, 1), (3, 1)]
    assert [(m.config, m.n) for m in ranked(values, "minimize")] == [(0, 2), (2, 2), (1, 1), (3, 1)]


def test_a_value_that_is_not_finite_is_no_part_of_a_mean() -> None:
    values = {0: [0.5, math.inf], 1: [None, math.nan], 2: [0.4, None]}
    assert ranked(values, "maximize") == [Mean(0, 0.5, 1), Mean(2, 0.4, 1)]
    assert best({0: [None]}, "maximize") is None


def _tied_study(results: Path) -> None:
    """A study whose two configurations tie (mean 0.625 over 2 seeds each), launched out of number order:
    configuration 1 (lr 0.3) ran first, then configuration 0 (lr 0.1); both were confirmed."""
    study = optuna.create_study(study_name="first", storage=default_url(results), direction="maximize")
    lr = CategoricalDistribution([0.1, 0.3])
    for number, (config, value, confirm) in enumerate(
        [(1, 0.75, False), (0, 0.75, False), (1, 0.5, True), (0, 0.5, True)]
    ):
        attrs = {"config": config, "repeat": int(confirm), "confirm": confirm}
        params = {"lr": 0.3 if config else 0.1}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions={"lr": lr}, value=value, user_attrs=attrs)
        )
        assert study.trials[-1].number == number


def test_tied_configurations_get_one_winner_in_the_base_the_confirmation_and_the_report(
    tmp_path: Path,
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    _tied_study(results)
    trials = optuna.load_study(study_name="first", storage=default_url(results)).trials

    searched = write_study(
        tmp_path / "first.toml",
        study={"sampler": "grid", "confirm_top": 1, "confirm_repeats": 1},
        space={"lr": [0.1, 0.3]},
    )
    assert [config for config, _ in top_configs(load_study(searched), trials[:2])] == [0]

    chained = load_study(
        write_study(
            tmp_path / "second.toml",
            study={"name": "second", "sampler": "grid", "base": "first"},
            space={"weight_decay": [0.0, 0.1]},
        )
    )
    storage = RDBStorage(default_url(results))
    try:
        inherited = base.winner(chained, storage, default_url(results))
    finally:
        storage.engine.dispose()
    assert (inherited.config, inherited.params, inherited.confirmed) == (0, {"lr": 0.1}, True)

    (data,) = json.loads(report(study="first", results_dir=results, fmt="json"))
    assert data["confirmation"]["search_winner"]["params"] == {"lr": 0.1}
    assert data["confirmation"]["confirmed_winner"] == {"params": {"lr": 0.1}, "value": 0.625, "n": 2}
    assert [(row["lr"], row["best"]) for row in data["rows"]] == [(0.1, True), (0.3, False)]
