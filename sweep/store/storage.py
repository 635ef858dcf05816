"""Where studies live: the storage URL, opening the Optuna storage and study, and its errors in one place.

The default storage is `sqlite:///<results_dir>/sweep.db`; `--storage` takes any SQLAlchemy URL
(`postgresql://user@host/db`, ...). Library errors (a database that cannot be opened, a bad URL, a
missing driver) become a SweepError in `storage_errors`, the one place that knows their types.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy as sa
import sqlalchemy.exc
from optuna.storages import RDBStorage
from optuna.study import StudyDirection
from sqlalchemy.engine import make_url

from sweep._compat import check_schema_version, study_id
from sweep._compat.riding_storage import RidingStorage
from sweep.errors import SweepError, causes
from sweep.polling import wait_until
from sweep.store.claims import create_tables, is_registered, register_study, retry_races
from sweep.store.outage import StorageOutage
from sweep.store.records import StudyRecord

DB_NAME = "sweep.db"
MARK_WAIT_S = 5.0  # how long a launch waits for a just-created study to be marked as sweep's
RUNS = "runs"  # <results_dir>/runs/<study>/<trial>/: the run dirs


def default_url(results_dir: Path) -> str:
    """The SQLite database of all studies in `results_dir` (an absolute path, so the cwd does not matter)."""
    return f"sqlite:///{(Path(results_dir) / DB_NAME).resolve()}"


def shown(url: str) -> str:
    """The URL as sweep prints it: with its password, if any, as ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def url_of(storage_url: str | None, results_dir: Path) -> str:
    """The storage a command uses: `--storage` when given, else RESULTS_DIR/sweep.db."""
    return storage_url or default_url(results_dir)


def runs_dir(results_dir: Path, study: str) -> Path:
    """The folder of a study's run dirs: `<results_dir>/runs/<study>`, one `<trial>/` per trial; absolute,
    because trials store their run dir and later commands may run from another folder."""
    return Path(results_dir).absolute() / RUNS / study


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


@contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn the storage libraries' exceptions into a one-line SweepError naming the URL."""
    try:
        yield
    except sqlalchemy.exc.ArgumentError as err:
        raise SweepError(f"storage '{shown(url)}': not a valid SQLAlchemy URL ({err})") from None
    except sqlalchemy.exc.SQLAlchemyError as err:
        _raise_if_unwritable(err, url)
        reason = str(getattr(err, "orig", None) or err).splitlines()[0]
        raise SweepError(
            f"storage '{shown(url)}': cannot use the database ({reason}); check the URL and server"
        ) from None
    except optuna.exceptions.StorageInternalError as err:
        _raise_if_unwritable(err, url)
        raise SweepError(f"storage '{shown(url)}': {str(err).splitlines()[0]}") from None
    except ImportError as err:  # a database driver that is not installed (psycopg2, pymysql, ...)
        raise SweepError(
            f"storage '{shown(url)}': the database driver is missing ({err}); install it"
        ) from None


# What a full disk or a read-only database says, through SQLite, PostgreSQL or the OS: the cause, and
# the fix. Optuna words every failed commit as "invalid data ... e.g. exceeding max length", which
# sends the user looking at their data; the real cause is in the exception's chain.
_DISK_FULL = ("database or disk is full", "no space left on device", "disk full")
_READ_ONLY = ("attempt to write a readonly database", "read-only file system")


def unwritable_cause(err: BaseException) -> str | None:
    """'disk full' or 'read-only' when `err` or an exception it was raised from says so, else None."""
    for current in causes(err):
        text = str(current).lower()
        code = getattr(current, "errno", None)  # an OSError's
        name = getattr(current, "sqlite_errorname", None) or ""  # sqlite3's, e.g. SQLITE_READONLY_DIRECTORY
        pgcode = getattr(current, "pgcode", None)  # psycopg's SQLSTATE: 53100 disk_full, 25006 read-only
        if code == errno.ENOSPC or name == "SQLITE_FULL" or pgcode == "53100":
            return "disk full"
        if code in (errno.EROFS, errno.EACCES) or name.startswith("SQLITE_READONLY") or pgcode == "25006":
            return "read-only"
        if any(words in text for words in _DISK_FULL):
            return "disk full"
        if any(words in text for words in _READ_ONLY):
            return "read-only"
    return None


def _raise_if_unwritable(err: BaseException, url: str) -> None:
    """Raise the one-line SweepError of a full disk or a read-only database, naming its file."""
    cause = unwritable_cause(err)
    if cause is None:
        return
    path = sqlite_path(url)
    where = f"database {path}" if path is not None else f"storage '{shown(url)}'"
    if cause == "disk full":
        raise SweepError(
            f"{where}: cannot write, the disk is full; free space on it (or use another --results-dir "
            "or --storage), then run the command again"
        ) from None
    folder = f" and its folder {path.parent}" if path is not None else ""
    raise SweepError(
        f"{where}: cannot write, the database is read-only; make it{folder} writable "
        "(or use another --results-dir or --storage)"
    ) from None


def open_storage(
    url: str, *, create: bool, check_schema: bool = True, outage: StorageOutage | None = None
) -> RDBStorage:
    """Open the storage at `url`.

    Args:
        url: A SQLAlchemy URL.
        create: Create a missing SQLite file (launch); otherwise a missing file is an error (status).
        check_schema: Check the schema version with alembic (0.3 s of imports); readers may skip it.
        outage: A launcher's: its calls wait out a database that stops answering (`sweep.store.outage`).

    Raises:
        SweepError: The database cannot be opened, or does not exist and `create` is false.
    """
    path = sqlite_path(url)
    if path is not None and not create and not path.is_file():
        raise SweepError(f"storage '{shown(url)}': no database at {path}; run `sweep launch` first")
    if path is not None and not path.parent.is_dir():
        raise SweepError(
            f"storage '{shown(url)}': the folder {path.parent} does not exist; create it or fix the URL"
        )
    with storage_errors(url):
        if not create:  # a reader creates nothing, not even Optuna's tables in an empty database
            engine = sa.create_engine(url)
            try:
                empty = not sa.inspect(engine).has_table("version_info")
            finally:
                engine.dispose()
            if empty:
                raise SweepError(
                    f"storage '{shown(url)}': no studies there (an empty database); run `sweep launch` first"
                )
            storage = RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
            if check_schema:
                check_schema_version(storage)
            return storage
        # Launchers started together on an empty database all create the schema; the losers of that
        # race see "table already exists" and simply open it again.
        if outage is not None:
            return retry_races(lambda: RidingStorage(url, outage, skip_compatibility_check=not check_schema))
        return retry_races(lambda: RDBStorage(url, skip_compatibility_check=not check_schema))


def study_names(storage: RDBStorage) -> list[str]:
    """The names of the studies in `storage`, sorted."""
    # not get_all_study_summaries: that loads every trial of every study (9 s for 10,000 trials)
    return sorted(optuna.get_all_study_names(storage))


def load_existing(name: str, storage: RDBStorage, *, url: str) -> optuna.Study:
    """The study `name` in `storage`; a SweepError listing the stored studies when it is not there."""
    names = study_names(storage)
    if name not in names:
        raise SweepError(
            f"storage '{shown(url)}': no study named '{name}'; stored studies: {', '.join(names) or 'none'}"
        )
    return optuna.load_study(study_name=name, storage=storage)


def read_study(url: str, name: str, *, check_schema: bool = True) -> optuna.Study:
    """The stored study `name`, opened to read (status, report, cancel, sbatch): nothing is created, not
    even a missing SQLite file. `check_schema`: see `open_storage`; readers that only SELECT may skip it.

    Raises:
        SweepError: The storage cannot be opened, or it or the study does not exist.
    """
    storage = open_storage(url, create=False, check_schema=check_schema)
    with storage_errors(url):
        return load_existing(name, storage, url=url)


def stored_study(url: str, name: str) -> optuna.Study | None:
    """Like `read_study`, but None when the SQLite file or the study does not exist (a dry run).

    Raises:
        SweepError: The storage exists but cannot be opened.
    """
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        return None
    storage = open_storage(url, create=False)
    with storage_errors(url):
        return load_existing(name, storage, url=url) if name in study_names(storage) else None


def open_study(
    name: str,
    storage: RDBStorage,
    *,
    direction: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    url: str,
) -> optuna.Study:
    """Create the study `name`, or load it when it exists (a launch on an existing study continues it).

    Raises:
        SweepError: The stored study optimises in the other direction, or the storage fails.
    """
    with storage_errors(url):
        create_tables(storage)
        try:
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                direction=StudyDirection.MAXIMIZE if direction == "maximize" else StudyDirection.MINIMIZE,
                sampler=sampler,
                pruner=pruner,
            )
            register_study(storage, study_id(study))
            return study
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        stored = study.direction.name.lower()
        if stored != direction:
            raise SweepError(
                f"storage '{shown(url)}': study '{name}' was created to {stored}, the study file says "
                f"{direction}; rename the study or use another storage"
            )
        if not _made_by_sweep(storage, study):
            raise SweepError(
                f"storage '{shown(url)}': a study named '{name}' is there, made by another tool, not by "
                "sweep; give the study file another [study] name, or use another --storage"
            )
    return study


def _made_by_sweep(storage: RDBStorage, study: optuna.Study) -> bool:
    """Whether sweep created `study`: it is marked so (or, made by an older sweep, carries its plan).

    A launcher started together with the one that creates the study may load it in the moment between
    its creation and its mark: an empty unmarked study is looked at again for a few seconds.
    """

    def marked() -> bool:
        return is_registered(storage, study_id(study)) or StudyRecord.of(study).plan is not None

    # an unmarked study with trials is not in that moment: it was made by another tool
    wait_until(lambda: marked() or bool(study.get_trials(deepcopy=False)), MARK_WAIT_S, every_s=0.2)
    return marked()
