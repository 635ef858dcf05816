"""Storage URLs and errors: every library failure is a one-line SweepError, and nothing is created."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweep.errors import SweepError
from sweep.store.storage import default_url, load_existing, open_storage, open_study, sqlite_path


def test_default_url_is_sweep_db_in_the_results_dir(tmp_path: Path) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/sweep.db"
    assert sqlite_path(default_url(tmp_path)) == tmp_path.resolve() / "sweep.db"
    assert sqlite_path("postgresql://u@h/db") is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:////nonexistent/dir/x.db", "the folder /nonexistent/dir does not exist"),
        ("nosuchdb://x", "not a valid SQLAlchemy URL"),
        ("not a url", "not a valid SQLAlchemy URL"),
    ],
)
def test_unusable_storage_is_a_sweep_error(url: str, message: str) -> None:
    with pytest.raises(SweepError, match=message) as err:
        open_storage(url, create=True)
    assert "\n" not in str(err.value)


def test_missing_database_is_not_created_without_create(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="run `sweep launch` first"):
        open_storage(default_url(tmp_path), create=False)
    assert not (tmp_path / "sweep.db").exists()


def test_open_study_creates_then_loads_and_checks_direction(tmp_path: Path) -> None:
    url = default_url(tmp_path)
    storage = open_storage(url, create=True)
    kwargs = dict(sampler=optuna.samplers.RandomSampler(), pruner=optuna.pruners.NopPruner(), url=url)
    study = open_study("s", storage, direction="maximize", **kwargs)
    study.enqueue_trial({"x": 1})
    assert len(open_study("s", storage, direction="maximize", **kwargs).trials) == 1
    with pytest.raises(SweepError, match="created to maximize"):
        open_study("s", storage, direction="minimize", **kwargs)
    with pytest.raises(SweepError, match="no study named 'other'; stored studies: s"):
        load_existing("other", storage, url=url)


def test_a_password_in_the_storage_url_is_never_printed(tmp_path: Path) -> None:
    url = "postgresql+psycopg://sweeper:hunter2@127.0.0.1:1/nosuchdb"
    with pytest.raises(SweepError) as caught:
        open_storage(url, create=True)  # no server there (or no driver): an error that names the URL
    assert "hunter2" not in str(caught.value) and "sweeper:***@127.0.0.1" in str(caught.value)
