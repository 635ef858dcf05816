"""A configuration is its values: grids that grow and shrink, repeats raised, a fixed value changed, and
databases stored before configurations were numbered by their values (`sweep.store.configs`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from sweep._compat import create_trial
from sweep.cli import main
from sweep.launcher import dry_run, launch
from sweep.store import records
from sweep.store.configs import CONFIGS
from sweep.store.storage import default_url
from sweep.study import load_study
from sweep.study.identity import keyed, planned_configs
from tests.sweep.conftest import TINY_TRAIN, instant_job, write_study


def _grid(folder: Path, lrs: list[float], *, repeats: int = 1, **train: Any) -> Path:
    return write_study(
        folder / "grow.toml",
        study={"name": "grow", "sampler": "grid", "repeats": repeats},
        space={"lr": lrs},
        train={**TINY_TRAIN, "epochs": 1, **train},
    )


def _launch(study_file: Path, results: Path) -> list[str]:
    """Launch the study to its end; the lines it printed."""
    lines: list[str] = []
    launch(load_study(study_file), results_dir=results, executor="debug", job=instant_job, out=lines.append)
    return lines


def _dry_run(study_file: Path, results: Path) -> list[str]:
    lines: list[str] = []
    dry_run(load_study(study_file), storage_url=default_url(results), executor="debug", out=lines.append)
    return lines


def _runs(results: Path) -> list[tuple[float, int, int]]:
    """(lr, config, repeat) of every trial (lr 0.0: not a param), in the order they were made; all of them
    complete."""
    trials = optuna.load_study(study_name="grow", storage=default_url(results)).trials
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    return [(t.params.get("lr", 0.0), t.user_attrs["config"], t.user_attrs["repeat"]) for t in trials]


def _report(
    capsys: pytest.CaptureFixture[str], study_file: Path, results: Path, *extra: str
) -> tuple[list[dict[str, Any]], str]:
    """The report's rows (JSON) and its markdown."""
    args = ["report", "--study", str(study_file), "--results-dir", str(results), *extra]
    assert main([*args, "--format", "json"]) == 0
    (study,) = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    return study["rows"], capsys.readouterr().out


def test_a_grid_grows_shrinks_and_gets_more_seeds_running_only_what_is_new(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    _launch(_grid(tmp_path, [0.01, 0.02]), results)
    assert _runs(results) == [(0.01, 0, 0), (0.02, 1, 0)]

    grown = _grid(tmp_path, [0.03, 0.01, 0.02])  # the new value first: every position moves
    said = "grow: 1 new configuration, 0 finished ones no longer in the study file"
    assert _dry_run(grown, results)[:2] == [said, "config 2 repeat 0  lr=0.03"]
    assert _launch(grown, results)[0] == said
    assert _runs(results) == [(0.01, 0, 0), (0.02, 1, 0), (0.03, 2, 0)]  # exactly one more trial
    rows, text = _report(capsys, grown, results)
    assert [row["lr"] for row in rows] == [0.01, 0.02, 0.03]
    assert "no longer in the study file" not in text

    shrunk = _grid(tmp_path, [0.03, 0.01])
    assert (
        _launch(shrunk, results)[0]
        == "grow: 0 new configurations, 1 finished one no longer in the study file"
    )
    assert len(_runs(results)) == 3  # nothing ran, nothing was lost
    rows, text = _report(capsys, shrunk, results)
    assert [row["lr"] for row in rows] == [0.01, 0.03]
    assert "1 configuration no longer in the study file: LR 0.02 (`--all` shows them)." in text
    rows, text = _report(capsys, shrunk, results, "--all")
    assert [row["lr"] for row in rows] == [0.01, 0.02, 0.03]
    assert "1 configuration no longer in the study file: LR 0.02 (shown above)." in text

    _launch(_grid(tmp_path, [0.03, 0.01], repeats=2), results)  # one more seed of each configuration
    assert _runs(results)[3:] == [(0.03, 2, 1), (0.01, 0, 1)]


def test_a_changed_fixed_value_makes_every_configuration_new_and_says_so_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    _launch(_grid(tmp_path, [0.01, 0.02]), results)
    longer = _grid(tmp_path, [0.01, 0.02], epochs=2)
    said = "grow: 2 new configurations, 2 finished ones no longer in the study file"
    assert _dry_run(longer, results)[0] == said
    lines = _launch(longer, results)
    assert lines[0] == said and "submitted" in lines[1]  # before anything runs
    assert _runs(results) == [(0.01, 0, 0), (0.02, 1, 0), (0.01, 2, 0), (0.02, 3, 0)]
    rows, text = _report(capsys, longer, results)
    assert [row["lr"] for row in rows] == [0.01, 0.02]
    assert [row["val_acc"] for row in rows] == [pytest.approx(0.02), pytest.approx(0.04)]  # 2 epochs' runs
    assert "2 configurations no longer in the study file: LR 0.01, Epochs 1; LR 0.02, Epochs 1" in text


def test_a_database_from_before_values_is_matched_by_them_once_and_extended(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _launch(_grid(tmp_path, [0.01, 0.02]), results)
    engine = sa.create_engine(default_url(results))
    with engine.begin() as conn:  # the previous layout: trials numbered by position, no sweep_configs
        conn.execute(sa.text(f"DROP TABLE {CONFIGS.name}"))
    db = (results / "sweep.db").read_bytes()

    grown = _grid(tmp_path, [0.03, 0.01, 0.02])
    said = "grow: 1 new configuration, 0 finished ones no longer in the study file"
    assert _dry_run(grown, results)[:2] == [said, "config 2 repeat 0  lr=0.03"]
    assert (results / "sweep.db").read_bytes() == db  # a dry run matches in memory, writes nothing
    assert _launch(grown, results)[0] == said
    assert _runs(results) == [(0.01, 0, 0), (0.02, 1, 0), (0.03, 2, 0)]
    with engine.connect() as conn:
        stored = conn.execute(sa.select(CONFIGS.c.config, CONFIGS.c.key).order_by(CONFIGS.c.config)).all()
    by_key = {config.key: config.params["lr"] for config in planned_configs(load_study(grown))}
    assert [(number, by_key[key]) for number, key in stored] == [(0, 0.01), (1, 0.02), (2, 0.03)]
    assert _launch(grown, results)[0].startswith("grow: 3 trials")  # matched once: nothing new now
    engine.dispose()


def test_a_study_of_train_alone_raised_n_trials_runs_only_the_new_ones(tmp_path: Path) -> None:
    def alone(n_trials: int) -> Path:
        return write_study(
            tmp_path / "grow.toml",
            study={"name": "grow", "sampler": "grid", "n_trials": n_trials},
            train={**TINY_TRAIN, "epochs": 1, "lr": 0.05},
        )

    results = tmp_path / "results"
    _launch(alone(2), results)
    assert (
        _launch(alone(3), results)[0]
        == "grow: 1 new configuration, 0 finished ones no longer in the study file"
    )
    assert [config for _, config, _ in _runs(results)] == [0, 1, 2]

    # the same with a database from before values: equal configurations matched by their order
    older = tmp_path / "older"
    _launch(alone(2), older)
    with sa.create_engine(default_url(older)).begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {CONFIGS.name}"))
    _launch(alone(3), older)
    assert [config for _, config, _ in _runs(older)] == [0, 1, 2]


def test_equal_values_are_told_apart_by_their_order_and_keys_do_not_depend_on_key_order(
    tmp_path: Path,
) -> None:
    first, second, other = keyed(['{"a":1}', '{"a":1}', '{"a":2}'])
    assert len({first, second, other}) == 3 and second == f"{first}#1"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = _grid(tmp_path / "a", [0.01, 0.02], epochs=2, batch_size=8)
    two = write_study(  # the same values, written in another order
        tmp_path / "b" / "grow.toml",
        study={"name": "grow", "sampler": "grid"},
        space={"lr": [0.02, 0.01]},
        train={"batch_size": 8, "epochs": 2, **{k: v for k, v in TINY_TRAIN.items() if k != "batch_size"}},
    )
    keys = [config.key for config in planned_configs(load_study(one))]
    assert [config.key for config in planned_configs(load_study(two))] == keys[::-1]


def test_a_sampled_study_with_more_n_trials_samples_only_the_new_ones(tmp_path: Path) -> None:
    def sampled(n_trials: int) -> Path:
        return write_study(
            tmp_path / "grow.toml",
            study={"name": "grow", "sampler": "random", "n_trials": n_trials, "repeats": 2},
            space={"lr": {"low": 0.01, "high": 0.1}},
            train={**TINY_TRAIN, "epochs": 1},
        )

    results = tmp_path / "results"
    _launch(sampled(2), results)
    first = _runs(results)
    assert _launch(sampled(3), results)[0].startswith("trial 4 submitted")  # nothing new to say first
    runs = _runs(results)
    assert runs[:4] == first and [(config, repeat) for _, config, repeat in runs[4:]] == [(2, 0), (2, 1)]


def test_a_grown_grids_param_may_gain_choices_but_keeps_its_kind(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'kinds.db'}")
    checked = optuna.distributions.check_distribution_compatibility

    def add(value: Any, distribution: BaseDistribution) -> None:
        create_trial(study, records.running_template({"a": value}, {"a": distribution}, {}))

    add(1, CategoricalDistribution([1, 2]))
    grown = CategoricalDistribution([3, 1, 2])  # a value added first
    with pytest.raises(ValueError, match="dynamic value space"):  # Optuna's own way refuses it
        study.add_trial(optuna.trial.create_trial(params={"a": 3}, distributions={"a": grown}, value=0.0))
    add(3, grown)
    with pytest.raises(ValueError, match="different distribution kind"):
        add(0.5, FloatDistribution(0.0, 1.0))
    assert [t.params for t in study.get_trials()] == [{"a": 1}, {"a": 3}]
    assert optuna.distributions.check_distribution_compatibility is checked  # put back after each
