"""`[study] base = "NAME"`: a chain of studies, each training the previous one's winner, and its errors."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli import main
from sweep.store.storage import default_url
from sweep.study import load_study
from sweep.study.spec import params_text
from tests.sweep.conftest import (
    ROOT,
    TINY_RESOURCES,
    TINY_TRAIN,
    assert_one_line_error,
    sweep_main,
    write_study,
)

# val_acc is best (1.0) at x = 2, y = 7, z = 1: the middle value of each list below, never the first
SCORE_PY = """\
import sys, sweep
x, y, z = (float(arg) for arg in sys.argv[1:4])
sweep.log_epoch(1, val_acc=1 - ((x - 2) ** 2 + (y - 7) ** 2 + (z - 1) ** 2) / 100)
"""


def _study(folder: Path, name: str, body: str, *, args: str = '"{x}", "{y}", "{z}"') -> Path:
    (folder / "score.py").write_text(SCORE_PY)
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\nsampler = "grid"\n{body}\n[resources]\ngpus = 0\ncpus = 1\n'
        f'[program]\ncommand = ["{sys.executable}", "score.py", {args}]\n'
    )
    return path


def _chain(folder: Path) -> list[Path]:
    return [
        _study(folder, "first", "[train]\ny = 5\nz = 0\n[space]\nx = [1, 2, 3]"),
        _study(folder, "second", 'base = "first"\n[space]\ny = [5, 7, 9]'),
        _study(folder, "third", 'base = "second"\nn_trials = 1\n[train]\nz = 1'),
    ]


def _launch(study_file: Path, results: Path, *extra: str) -> int:
    args = ["--study", str(study_file), "--executor", "debug", "--results-dir", str(results), *extra]
    return main(["launch", *args])


def _params(results: Path, name: str) -> list[dict[str, float]]:
    """The values each trial's program got (its params.json), in trial order."""
    study = optuna.load_study(study_name=name, storage=default_url(results))
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    return [json.loads((Path(t.user_attrs["run_dir"]) / "params.json").read_text()) for t in study.trials]


def test_a_chain_of_three_studies_each_trains_the_previous_winner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    first, second, third = _chain(tmp_path)
    assert _launch(first, results) == 0
    capsys.readouterr()
    assert _launch(second, results, "--dry-run") == 0  # says what it inherits, stores nothing
    dry = capsys.readouterr().out.splitlines()
    assert dry[0] == (
        "Values from study `first`'s winner: x=2 (configuration 1; trial 1; val_acc 0.9500, the mean of 1)."
        " Inherited: x=2 z=0"
    )
    assert optuna.study.get_all_study_names(default_url(results)) == ["first"]
    assert _launch(second, results) == 0
    assert [(p["x"], p["y"], p["z"]) for p in _params(results, "second")] == [(2, 5, 0), (2, 7, 0), (2, 9, 0)]
    assert _launch(third, results) == 0
    assert [(p["x"], p["y"], p["z"]) for p in _params(results, "third")] == [(2, 7, 1)]
    capsys.readouterr()
    assert main(["report", "--study", str(third), "--results-dir", str(results)]) == 0
    report = capsys.readouterr().out
    assert report.splitlines()[2] == (
        "Values from study `second`'s winner: y=7 (configuration 1; trial 1; val_acc 0.9900, the mean of 1)."
    )

    # `sweep sbatch` writes the same values for a job run by hand
    assert main(["sbatch", "--study", str(third), "--config", "0", "--results-dir", str(results)]) == 0
    job = json.loads((results / "runs" / "third" / "config0-repeat0" / "program.json").read_text())
    assert (job["values"]["x"], job["values"]["y"], job["values"]["z"]) == (2, 7, 1)

    # the values were fixed at the first launch: a base whose winner changes later changes nothing
    assert (
        _launch(_study(tmp_path, "second", 'base = "first"\n[train]\nz = 1\n[space]\ny = [5, 7, 9]'), results)
        == 0
    )
    assert [(p["y"], p["z"]) for p in _params(results, "second")][3:] == [(5, 1), (7, 1), (9, 1)]
    capsys.readouterr()
    assert _launch(third, results, "--dry-run") == 0
    assert "configuration 1; trial 1;" in capsys.readouterr().out.splitlines()[0]


def test_a_missing_or_unfinished_base_or_a_missing_value_is_one_line_and_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    first, second, _ = _chain(tmp_path)
    args = ["--executor", "debug", "--results-dir", str(results)]
    result = sweep_main(capsys, "launch", "--study", str(second), *args)
    assert_one_line_error(result, "[study] base 'first'", "no database")  # nothing stored at all yet
    assert not results.exists()

    results.mkdir()
    optuna.create_study(study_name="other", storage=default_url(results))  # another study, made by hand
    result = sweep_main(capsys, "launch", "--study", str(second), *args)
    assert_one_line_error(result, "[study] base 'first'", "no study of that name")
    optuna.create_study(study_name="first", storage=default_url(results))
    result = sweep_main(capsys, "launch", "--study", str(second), *args)
    assert_one_line_error(result, "[study] base 'first'", "no finished trial yet")
    optuna.delete_study(study_name="first", storage=default_url(results))

    assert _launch(first, results) == 0
    lacking = _study(tmp_path, "lacking", 'base = "first"\n[space]\ny = [5, 7]', args='"{x}", "{y}", "{w}"')
    for dry in ([], ["--dry-run"]):
        result = sweep_main(capsys, "launch", "--study", str(lacking), *args, *dry)
        assert_one_line_error(result, "[study] base 'first'", "no value for w", "set it in [train]")
    assert sorted(optuna.study.get_all_study_names(default_url(results))) == ["first", "other"]


def _shipped_copy(folder: Path, name: str, **train: object) -> Path:
    """The shipped study `name` in `folder`, on the CPU: [train] updated with `train`, tiny [resources]."""
    data = tomllib.loads((ROOT / "studies" / f"{name}.toml").read_text())
    own = {**data.get("train", {}), **train}
    return write_study(
        folder / f"{name}.toml",
        study=data["study"],
        train=own,
        space=data.get("space"),
        points=data.get("points"),
        resources=TINY_RESOURCES,
    )


def _winner(results: Path, name: str) -> optuna.trial.FrozenTrial:
    """The study's best COMPLETE trial (one seed each: the best mean), the first of equal ones."""
    trials = optuna.load_study(study_name=name, storage=default_url(results)).trials
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    return max(trials, key=lambda t: (t.value, -t.number))


def _config(trial: optuna.trial.FrozenTrial) -> dict[str, object]:
    return dict(json.loads((Path(trial.user_attrs["run_dir"]) / "config.json").read_text()))


@pytest.mark.slow
def test_the_shipped_chain_trains_each_winner_on_fake_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """optimizers, then tuning (base optimizers), then final (base tuning): the shipped files, on fake
    data at depth 8 for one epoch (final: 2 instead of 100); no value is copied from one to the next."""
    results = tmp_path / "results"
    optimizers = _shipped_copy(tmp_path, "optimizers", **{**TINY_TRAIN, "epochs": 1})
    tuning = _shipped_copy(tmp_path, "tuning")
    final = _shipped_copy(tmp_path, "final", epochs=2)
    assert dict(load_study(tuning).train) == {}  # everything but its points comes from the base
    for study_file in (optimizers, tuning, final):
        assert _launch(study_file, results) == 0
    best = _config(_winner(results, "optimizers"))
    tuned = optuna.load_study(study_name="tuning", storage=default_url(results)).trials
    assert len(tuned) == 7
    for trial in tuned:
        config = _config(trial)
        assert (config["optimizer"], config["lr"], config["depth"], config["dataset"]) == (
            best["optimizer"], 0.1, 8, "fake",
        )  # fmt: skip
    winner = _winner(results, "tuning")
    (last,) = optuna.load_study(study_name="final", storage=default_url(results)).trials
    config = _config(last)
    assert config["optimizer"] == best["optimizer"]
    assert {key: config[key] for key in winner.params} == winner.params
    assert (config["epochs"], config["evaluate_test"], config["depth"]) == (2, True, 8)
    capsys.readouterr()
    assert main(["report", "--study", str(final), "--results-dir", str(results)]) == 0
    assert f"Values from study `tuning`'s winner: {params_text(winner.params)}" in capsys.readouterr().out


def test_a_base_that_ran_confirmation_gives_its_confirmed_winner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    confirmed = "confirm_top = 1\nconfirm_repeats = 1\n[train]\ny = 5\nz = 0\n[space]\nx = [1, 2, 3]"
    assert _launch(_study(tmp_path, "first", confirmed), results) == 0
    capsys.readouterr()
    assert (
        _launch(_study(tmp_path, "second", 'base = "first"\n[space]\ny = [5, 7]'), results, "--dry-run") == 0
    )
    assert capsys.readouterr().out.splitlines()[0] == (
        "Values from study `first`'s confirmed winner: x=2 (configuration 1; trials 1, 3; val_acc 0.9500, "
        "the mean of 2). Inherited: x=2 z=0"
    )


def test_tied_configurations_the_base_winner_and_the_reports_best_row_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # x = 1 and x = 3 score the same (0.94); x = 3 (configuration 1) ran twice, x = 1 (configuration 0)
    # once: equal means go to more finished runs (`sweep.study.winner`), in the chain and in the report
    results = tmp_path / "results"
    tied = "[train]\ny = 5\nz = 0\n[space]\nx = [1, 3]"
    assert _launch(_study(tmp_path, "first", tied), results) == 0
    assert _launch(_study(tmp_path, "first", "repeats = 2\n" + tied.replace("[1, 3]", "[3]")), results) == 0
    assert [p["x"] for p in _params(results, "first")] == [1, 3, 3]
    capsys.readouterr()
    second = _study(tmp_path, "second", 'base = "first"\n[space]\ny = [5, 7]')
    assert _launch(second, results, "--dry-run") == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "Values from study `first`'s winner: x=3 (configuration 1; trials 1, 2; val_acc 0.9400, "
        "the mean of 2). Inherited: x=3 z=0"
    )
    args = ["report", "--study", "first", "--all", "--format", "json", "--results-dir", str(results)]
    assert main(args) == 0
    (first,) = json.loads(capsys.readouterr().out)
    assert [(row["x"], row["n"], row["best"]) for row in first["rows"]] == [(3, 2, True), (1, 1, False)]
