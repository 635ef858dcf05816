"""Several launchers on one study: each (config, repeat) is claimed atomically in the database.

The end-to-end tests start three real launchers together on a fresh database, several rounds, on
SQLite and on a real PostgreSQL server (scripts/postgres-dev.sh; CI starts it, and elsewhere the
PostgreSQL tests run when SWEEP_TEST_POSTGRES_URL names a role that may create databases).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from sweep._compat import rdb_storage, study_id, trial_id
from sweep.store.claims import CLAIMS, Claims, Holder, create_tables
from tests.conftest import deadline
from tests.sweep.conftest import ROOT, assert_one_line_error, random_study, run_sweep, sweep_cmd

POSTGRES_URL = os.environ.get("SWEEP_TEST_POSTGRES_URL", "")
ROUNDS = 3
LAUNCHERS = 3
# A user's program that logs one epoch at once: the launchers' bookkeeping is what is tested
QUICK = "import sys, sweep\nsweep.log_epoch(1, val_acc=float(sys.argv[1]) / 10)\n"


def _never(_: Holder) -> bool:
    return False


def _always(_: Holder) -> bool:
    return True


def _study(tmp_path: Path, url: str | None = None) -> optuna.Study:
    return random_study("claims", url or f"sqlite:///{tmp_path / 'claims.db'}")


def _claims(study: optuna.Study, launcher: str) -> Claims:
    storage = rdb_storage(study)
    create_tables(storage)
    return Claims(storage, study_id(study), launcher)


def test_a_run_is_claimed_once_and_freed_only_by_a_failed_trial(tmp_path: Path) -> None:
    study = _study(tmp_path)
    first, second = _claims(study, "a:1"), _claims(study, "b:2")
    assert first.claim(0, 0, may_take=_never)
    assert not second.claim(0, 0, may_take=_never)  # held, trial not made yet, its launcher alive
    assert second.claim(0, 1, may_take=_never)  # another seed is another run
    trial = study.ask()
    first.bind(0, 0, trial_id(trial))
    assert not second.claim(0, 0, may_take=_always)  # a RUNNING trial is taken over, never re-claimed
    study.tell(trial, 0.5)
    assert not second.claim(0, 0, may_take=_always)  # COMPLETE: done for good
    failing = study.ask()
    assert second.claim(1, 0, may_take=_never)
    second.bind(1, 0, trial_id(failing))
    study.tell(failing, state=TrialState.FAIL)
    assert not first.claim(1, 0, may_take=_never, rerun=False)  # a sampled index is never reused
    assert first.claim(1, 0, may_take=_never)  # a failed planned configuration runs again
    holder = first.holder(1, 0)
    assert holder is not None and (holder.launcher, holder.trial_id) == ("a:1", None)


def test_a_claim_whose_launcher_died_before_making_its_trial_changes_hands(tmp_path: Path) -> None:
    study = _study(tmp_path)
    dead, alive = _claims(study, "a:1"), _claims(study, "b:2")
    assert dead.claim(3, 0, may_take=_never)
    assert alive.claim(3, 0, may_take=lambda holder: holder.launcher == "a:1")
    holder = alive.holder(3, 0)
    assert holder is not None and holder.launcher == "b:2"


def test_of_launchers_taking_over_one_trial_exactly_one_wins(tmp_path: Path) -> None:
    study = _study(tmp_path)
    dead = _claims(study, "a:1")
    trial = study.ask()
    assert dead.claim(0, 0, may_take=_never)
    dead.bind(0, 0, trial_id(trial))
    others = [_claims(study, f"host{i}:{i}") for i in range(3)]
    # All three read the row while "a:1" held it, then swap: the compare-and-set lets one through
    seen = dead.holder(0, 0)
    assert seen is not None
    assert [claims._swap(seen, trial_id=trial_id(trial), now=time.time()) for claims in others] == [
        True,
        False,
        False,
    ]

    # One after the other, each sees a live holder: no second take-over
    def gone(holder: Holder) -> bool:
        return holder.launcher == "a:1"

    assert not others[1].take_over(0, 0, trial_id(trial), may_take=gone)
    assert others[0].stamp() == {(0, 0)} and others[1].stamp() == set()
    # the old launcher, back after a stop, learns at its next stamp that it lost the trial
    assert dead.stamp() == set()


def test_a_trial_from_before_claims_is_taken_over_by_one_launcher(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()  # no claim row: a study launched by an older sweep
    first, second = _claims(study, "a:1"), _claims(study, "b:2")
    assert first.take_over(5, 0, trial_id(trial), may_take=_always)
    assert not second.take_over(5, 0, trial_id(trial), may_take=_never)  # "a:1" lives


def test_stamping_moves_only_this_launchers_claims(tmp_path: Path) -> None:
    study = _study(tmp_path)
    mine, theirs = _claims(study, "a:1"), _claims(study, "b:2")
    assert mine.claim(0, 0, may_take=_never) and theirs.claim(1, 0, may_take=_never)
    before = theirs.holder(1, 0)
    time.sleep(0.05)
    assert mine.stamp() == {(0, 0)}
    after_mine, after_theirs = mine.holder(0, 0), theirs.holder(1, 0)
    assert before is not None and after_mine is not None and after_theirs is not None
    assert after_mine.stamped > before.stamped and after_theirs.stamped == before.stamped


# -- a study another tool made --------------------------------------------------------------------------


def test_a_study_of_the_same_name_made_by_another_tool_is_refused_not_adopted(tmp_path: Path) -> None:
    """Fault: a plain Optuna study named like the study file was adopted (and its trials mixed in);
    a refused launch left empty run folders."""
    study_file = _grid_file(tmp_path, configs=2)
    results = tmp_path / "results"
    results.mkdir()
    url = f"sqlite:///{results / 'sweep.db'}"
    optuna.create_study(study_name="race", storage=url, direction="maximize").enqueue_trial({"x": 1})
    result = run_sweep(
        "launch", "--study", str(study_file), "--executor", "debug", "--results-dir", str(results)
    )
    assert_one_line_error(result, "made by another tool", "[study] name")
    assert not (results / "runs").exists()
    assert len(optuna.load_study(study_name="race", storage=url).trials) == 1  # untouched


def test_status_on_an_empty_database_creates_nothing(tmp_path: Path) -> None:
    """Fault: `sweep status` on an empty database created Optuna's tables in it."""
    db = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{db}").connect().close()  # an empty SQLite file
    result = run_sweep("status", "--storage", f"sqlite:///{db}")
    assert_one_line_error(result, "no studies there")
    assert sa.inspect(sa.create_engine(f"sqlite:///{db}")).get_table_names() == []


# -- three launchers at once, end to end ------------------------------------------------------------------


def _grid_file(folder: Path, *, configs: int = 8) -> Path:
    (folder / "quick.py").write_text(QUICK)
    lrs = ", ".join(str(i + 1) for i in range(configs))
    path = folder / "race.toml"
    path.write_text(
        '[study]\nname = "race"\nsampler = "grid"\n'
        f"[train]\nepochs = 1\n[space]\nlr = [{lrs}]\n[resources]\ngpus = 0\ncpus = 1\n"
        f'[program]\ncommand = ["{sys.executable}", "quick.py", "{{lr}}"]\n'
    )
    return path


def _race(study_file: Path, results: Path, storage: str | None) -> list[subprocess.CompletedProcess[str]]:
    """LAUNCHERS launchers of one study started together; their results once all have exited."""
    args = ["launch", "--study", str(study_file), "--executor", "debug", "--results-dir", str(results)]
    args += ["--storage", storage] if storage else []
    procs = [
        subprocess.Popen(
            sweep_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(LAUNCHERS)
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=deadline(180))
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def _check_each_configuration_ran_once(url: str, launched: list[subprocess.CompletedProcess[str]]) -> None:
    for result in launched:
        assert result.returncode == 0, result.stderr
        assert "error" not in result.stderr.lower(), result.stderr
    study = optuna.load_study(study_name="race", storage=url)
    states = collections.Counter(t.state for t in study.trials)
    assert states == {TrialState.COMPLETE: 8}, states  # no duplicate, no phantom FAIL
    configs = sorted(t.user_attrs["config"] for t in study.trials)
    assert configs == list(range(8))
    submitted = sum(result.stdout.count(" submitted ") for result in launched)
    assert submitted == 8


@pytest.mark.slow
def test_three_launchers_started_together_on_sqlite_run_each_configuration_once(tmp_path: Path) -> None:
    """Fault: two launchers started together ran configurations twice; on a fresh results folder the
    second died creating the schema."""
    study_file = _grid_file(tmp_path)
    for round_ in range(ROUNDS):
        results = tmp_path / f"round{round_}"  # a fresh database each round: the schema race too
        launched = _race(study_file, results, None)
        _check_each_configuration_ran_once(f"sqlite:///{results / 'sweep.db'}", launched)


@pytest.fixture
def postgres_databases() -> Iterator[list[str]]:
    """Fresh PostgreSQL databases on the test server, dropped at the end; the URLs go in the list."""
    if not POSTGRES_URL:
        pytest.skip(
            "no PostgreSQL server: `bash scripts/postgres-dev.sh start` and set SWEEP_TEST_POSTGRES_URL"
        )
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # restarts
    made: list[str] = []
    urls: list[str] = []

    def fresh() -> str:
        name = f"sweep_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        made.append(name)
        return sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    urls.extend(fresh() for _ in range(ROUNDS))
    yield urls
    with admin.connect() as conn:
        for name in made:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.mark.slow
def test_three_launchers_started_together_on_postgresql_run_each_configuration_once(
    tmp_path: Path, postgres_databases: list[str]
) -> None:
    """Fault: on PostgreSQL three launchers ran 12, 10 and 11 trials of an 8-configuration grid, and
    on an empty database two of three died creating the schema."""
    study_file = _grid_file(tmp_path)
    for round_, url in enumerate(postgres_databases):
        launched = _race(study_file, tmp_path / f"round{round_}", url)
        _check_each_configuration_ran_once(url, launched)
        for result in launched:
            assert ":sweep@" not in result.stdout + result.stderr  # the password is never printed


# -- launchers growing one study at once --------------------------------------------------------------------


def _grow_race(tmp_path: Path, storage: str | None) -> None:
    """A finished 4-configuration grid grown to 8 (the new values first: every position moves), then
    LAUNCHERS launchers of it started together: each new configuration runs once, the old ones never."""
    results = tmp_path / "results"
    url = storage or f"sqlite:///{results / 'sweep.db'}"
    first = run_sweep(
        "launch", "--study", str(_grid_file(tmp_path, configs=4)), "--executor", "debug",
        "--results-dir", str(results), *(["--storage", storage] if storage else []),
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    grown = _grid_file(tmp_path, configs=8)
    grown.write_text(grown.read_text().replace("[1, 2, 3, 4, 5, 6, 7, 8]", "[5, 6, 7, 8, 1, 2, 3, 4]"))
    launched = _race(grown, results, storage)
    for result in launched:
        assert result.returncode == 0, result.stderr
        assert "error" not in result.stderr.lower(), result.stderr
    trials = optuna.load_study(study_name="race", storage=url).trials
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    runs = [(t.params["lr"], t.user_attrs["config"]) for t in trials]
    assert runs[:4] == [(1, 0), (2, 1), (3, 2), (4, 3)]
    assert sorted(runs[4:]) == [(5, 4), (6, 5), (7, 6), (8, 7)]  # each new one once, numbered in file order
    assert sum(result.stdout.count(" submitted ") for result in launched) == 4


@pytest.mark.slow
def test_launchers_growing_one_study_at_once_on_sqlite_run_each_new_configuration_once(
    tmp_path: Path,
) -> None:
    _grow_race(tmp_path, None)


@pytest.mark.slow
def test_launchers_growing_one_study_on_postgresql_run_each_new_configuration_once(
    tmp_path: Path, postgres_databases: list[str]
) -> None:
    _grow_race(tmp_path, postgres_databases[0])


def test_claims_table_is_made_beside_optunas_on_first_use(tmp_path: Path) -> None:
    study = _study(tmp_path)
    storage = rdb_storage(study)
    create_tables(storage)
    create_tables(storage)  # again: a no-op
    assert sa.inspect(storage.engine).has_table(CLAIMS.name)
