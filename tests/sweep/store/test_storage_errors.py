"""A database on a full disk or a read-only one: one `error:` line naming the file and the cause.

Real SQLite on a real tmpfs (root only; skipped otherwise) and a real read-only SQLite connection.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from sweep.errors import SweepError
from sweep.store.storage import default_url, open_storage, storage_errors, unwritable_cause
from tests.conftest import deadline
from tests.sweep.conftest import assert_one_line_error, run_sweep, write_study
from tests.sweep.mounts import fill, read_only, tmpfs

OPTUNA_WORDING = "exceeding max length"  # what Optuna says of any failed commit


def _study(tmp_path: Path) -> Path:
    return write_study(tmp_path / "k6.toml", study={"name": "k6", "sampler": "grid"}, space={"lr": [0.05]})


def test_a_full_disk_under_the_database_is_one_line_naming_it(tmp_path: Path) -> None:
    """Fault: on a full disk `sweep launch` said 'An exception is raised during the commit ... e.g.
    exceeding max length', sending the user to look at their data."""
    with tmpfs(tmp_path / "small", "2m") as small:
        open_storage(default_url(small), create=True)  # the database exists; then the disk fills up
        fill(small)
        result = run_sweep(
            "launch", "--study", str(_study(tmp_path)), "--executor", "debug", "--results-dir", str(small),
            timeout=deadline(120),
        )  # fmt: skip
    assert_one_line_error(result, f"database {small / 'sweep.db'}", "the disk is full")
    assert OPTUNA_WORDING not in result.stderr


def test_a_read_only_database_is_one_line_naming_it(tmp_path: Path) -> None:
    """Fault: a read-only database gave the same misleading 'exceeding max length' message."""
    with tmpfs(tmp_path / "ro", "2m") as mounted:
        open_storage(default_url(mounted), create=True).engine.dispose()  # a file open for writing: busy
        read_only(mounted)
        result = run_sweep(
            "launch", "--study", str(_study(tmp_path)), "--executor", "debug",
            "--results-dir", str(tmp_path / "results"), "--storage", default_url(mounted),
            timeout=deadline(120),
        )  # fmt: skip
    assert_one_line_error(result, f"database {mounted / 'sweep.db'}", "is read-only")
    assert OPTUNA_WORDING not in result.stderr


def test_the_error_of_a_real_read_only_connection_is_translated(tmp_path: Path) -> None:
    """Fault: 'attempt to write a readonly database' was not told apart from other database errors."""
    db = tmp_path / "sweep.db"
    open_storage(f"sqlite:///{db}", create=True)
    engine = sa.create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    with pytest.raises(SweepError) as caught, storage_errors(f"sqlite:///{db}"), engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    assert str(caught.value).startswith(f"database {db}: cannot write, the database is read-only")
    with engine.connect() as conn:  # the cause is found through the SQLAlchemy error's chain
        try:
            conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        except sa.exc.OperationalError as err:
            assert unwritable_cause(err) == "read-only"
            assert unwritable_cause(ValueError("exceeding max length")) is None


def test_optunas_failed_commit_on_a_read_only_database_names_the_cause(tmp_path: Path) -> None:
    """Fault: Optuna's StorageInternalError ('An exception is raised during the commit ... exceeding max
    length') hid the cause of a write that failed mid-launch; the cause is in its chain."""
    import optuna

    db = tmp_path / "sweep.db"
    open_storage(f"sqlite:///{db}", create=True).engine.dispose()
    storage = optuna.storages.RDBStorage(f"sqlite:///file:{db}?mode=ro&uri=true", skip_table_creation=True)
    with pytest.raises(optuna.exceptions.StorageInternalError, match=OPTUNA_WORDING):
        storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "k6")
    with pytest.raises(SweepError) as caught, storage_errors(f"sqlite:///{db}"):
        storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "k6")
    assert str(caught.value).startswith(f"database {db}: cannot write, the database is read-only")
    assert OPTUNA_WORDING not in str(caught.value)
