"""Who runs which (config, repeat) of a study, decided atomically in the study's own database.

Several launchers may share a study. A check of the stored trials followed by the creation of one is
two transactions, and two launchers in between both start the same configuration; so a launcher
first *claims* the run in sweep's table `sweep_claims`, one row per (study, config, repeat) with that
as its primary key: an INSERT that only one launcher can win. The row then names the launcher that
watches the run, its trial once created, and when the launcher last stamped it (its heartbeat).

Every later change is a compare-and-set, an UPDATE whose WHERE clause names what the launcher saw:
    re-run      the row's trial FAILed: the run is free again (a failed configuration is run again)
    take over   the row's launcher is dead (`sweep.store.owners`): the run, and its live job, change hands
    lost        a launcher whose rows another took over (it was stopped or cut off for minutes) sees
                that at its next stamp and leaves those trials alone

`sweep_studies` marks the studies sweep created, so a study of the same name made by another tool is
refused instead of adopted. Both tables live beside Optuna's and are made on first use.
"""

from __future__ import annotations

import contextlib
import functools
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from optuna.storages import RDBStorage
from sqlalchemy.engine import Connection

from sweep._compat import rdb_models
from sweep.store.tables import CLAIMS, METADATA, STUDIES

if TYPE_CHECKING:
    from sweep.store.outage import StorageOutage

T = TypeVar("T")


def retry_races(action: Callable[[], T], *, tries: int = 8) -> T:
    """`action()`, again after a short random pause when it lost a race to create the same schema
    (two launchers on an empty database both create the tables; the loser sees "already exists")."""
    for attempt in range(tries):
        try:
            return action()
        except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError) as err:
            text = str(err).lower()
            racing = "already exists" in text or "duplicate" in text or "unique" in text
            if not racing or attempt == tries - 1:
                raise
            time.sleep(random.uniform(0.05, 0.3))
    raise AssertionError("unreachable")


def create_tables(storage: RDBStorage) -> None:
    """Make sweep's tables in the storage's database when they are not there yet."""
    retry_races(lambda: METADATA.create_all(storage.engine, checkfirst=True))


def has_tables(storage: RDBStorage) -> bool:
    """Whether sweep's tables exist (a reader never creates them)."""
    return sa.inspect(storage.engine).has_table(CLAIMS.name)


def register_study(storage: RDBStorage, study_id: int) -> None:
    """Mark the study as made by sweep (its launch created it)."""
    with storage.engine.begin() as conn:
        conn.execute(sa.insert(STUDIES).values(study_id=study_id, created=time.time()))


def is_registered(storage: RDBStorage, study_id: int) -> bool:
    with storage.engine.connect() as conn:
        found = conn.execute(sa.select(STUDIES.c.study_id).where(STUDIES.c.study_id == study_id)).first()
    return found is not None


@dataclass(frozen=True)
class Holder:
    """A claim as stored: who watches the run, its trial, the last heartbeat."""

    config: int
    repeat: int
    trial_id: int | None
    launcher: str
    stamped: float


def _riding(method: Callable[..., T]) -> Callable[..., T]:
    """The Claims method, its database calls made through the launcher's StorageOutage, if any."""

    @functools.wraps(method)
    def call(self: Claims, *args: Any, **kwargs: Any) -> T:
        if self.outage is None:
            return method(self, *args, **kwargs)
        return self.outage.call(lambda: method(self, *args, **kwargs))

    return call


class Claims:
    """One launcher's view of a study's claims: claim, bind, take over, stamp."""

    def __init__(self, storage: RDBStorage, study_id: int, launcher: str) -> None:
        self.engine = storage.engine
        self.study_id = study_id
        self.launcher = launcher
        # a launcher's storage waits out a database that stops answering: so do its claims
        self.outage: StorageOutage | None = getattr(storage, "outage", None)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _row(self, config: int, repeat: int) -> sa.ColumnElement[bool]:
        return sa.and_(
            CLAIMS.c.study_id == self.study_id, CLAIMS.c.config == config, CLAIMS.c.repeat == repeat
        )

    @_riding
    def holder(self, config: int, repeat: int) -> Holder | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(CLAIMS).where(self._row(config, repeat))).first()
        if row is None:
            return None
        return Holder(config, repeat, row.trial_id, row.launcher, row.stamped)

    @_riding
    def claim(
        self, config: int, repeat: int, *, may_take: Callable[[Holder], bool], rerun: bool = True
    ) -> bool:
        """Claim the run (config, repeat) for this launcher; False when another holds it.

        A run is free when no row names it, when its trial FAILed (`rerun`: a planned configuration is
        run again; a sampled configuration's index is not reused), or when `may_take(holder)` says its
        launcher is gone before it created the trial.
        """
        now = time.time()
        if self._insert(config, repeat, trial_id=None, now=now):
            return True
        # claimed before: free only if its trial failed, or its launcher died before making one
        held = self.holder(config, repeat)
        if held is None:  # the row went away in between (never deleted by sweep): try once more
            return self.claim(config, repeat, may_take=may_take, rerun=rerun)
        if held.trial_id is not None and (not rerun or self._trial_state(held.trial_id) != "FAIL"):
            return False
        if held.trial_id is None and held.launcher == self.launcher:
            return True  # its own claim (an insert that committed before its answer was lost)
        if held.trial_id is None and not may_take(held):
            return False
        return self._swap(held, trial_id=None, now=now)

    @_riding
    def bind(self, config: int, repeat: int, trial_id: int) -> None:
        """The claimed run's trial is now `trial_id`."""
        with self._transaction() as conn:
            conn.execute(
                sa.update(CLAIMS)
                .where(self._row(config, repeat), CLAIMS.c.launcher == self.launcher)
                .values(trial_id=trial_id)
            )

    @_riding
    def take_over(
        self, config: int, repeat: int, trial_id: int, *, may_take: Callable[[Holder], bool]
    ) -> bool:
        """Take the RUNNING trial `trial_id` of the run from its launcher when `may_take(holder)` says
        that launcher is gone; exactly one of several launchers trying at once wins."""
        held = self.holder(config, repeat)
        if held is None:  # a trial from before claims existed: the first to insert its row wins
            if self._insert(config, repeat, trial_id=trial_id, now=time.time()):
                return True
            held = self.holder(config, repeat)
            if held is None:
                return False
        if held.launcher == self.launcher:
            return held.trial_id == trial_id
        if held.trial_id != trial_id or not may_take(held):
            return False
        return self._swap(held, trial_id=trial_id, now=time.time())

    def stamp(self) -> set[tuple[int, int]]:
        """Stamp this launcher's claims with the time; return the (config, repeat) it still holds."""
        with self._transaction() as conn:
            conn.execute(
                sa.update(CLAIMS)
                .where(CLAIMS.c.study_id == self.study_id, CLAIMS.c.launcher == self.launcher)
                .values(stamped=time.time())
            )
        return self.held()

    @_riding
    def held(self) -> set[tuple[int, int]]:
        """The (config, repeat) this launcher holds (a read; the stamping is the Stamper's)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(CLAIMS.c.config, CLAIMS.c.repeat).where(
                    CLAIMS.c.study_id == self.study_id, CLAIMS.c.launcher == self.launcher
                )
            ).all()
        return {(row.config, row.repeat) for row in rows}

    def _insert(self, config: int, repeat: int, *, trial_id: int | None, now: float) -> bool:
        """Insert the run's row for this launcher; False when a row is there already (the key's one
        winner is another launcher, or an earlier claim)."""
        try:
            with self._transaction() as conn:
                conn.execute(
                    sa.insert(CLAIMS).values(
                        study_id=self.study_id,
                        config=config,
                        repeat=repeat,
                        trial_id=trial_id,
                        launcher=self.launcher,
                        stamped=now,
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def _swap(self, held: Holder, *, trial_id: int | None, now: float) -> bool:
        """Compare-and-set: the row becomes this launcher's only if it is still as `held` says."""
        column = CLAIMS.c.trial_id
        same_trial = column.is_(None) if held.trial_id is None else column == held.trial_id
        with self._transaction() as conn:
            done = conn.execute(
                sa.update(CLAIMS)
                .where(self._row(held.config, held.repeat), CLAIMS.c.launcher == held.launcher, same_trial)
                .values(launcher=self.launcher, trial_id=trial_id, stamped=now)
            )
        if done.rowcount == 1:
            return True
        row = self.holder(held.config, held.repeat)  # a swap that committed before its answer was lost
        return row is not None and row.launcher == self.launcher and row.trial_id == trial_id

    def _trial_state(self, trial_id: int) -> str | None:
        trials = rdb_models().TrialModel
        with self.engine.connect() as conn:
            state = conn.execute(sa.select(trials.state).where(trials.trial_id == trial_id)).scalar()
        return None if state is None else getattr(state, "name", str(state))


class Stamper(threading.Thread):
    """Stamps a launcher's claims every `every_s` seconds from its own thread (and database connection),
    whatever the launcher's thread is doing; a `with` block runs it."""

    def __init__(self, claims: Claims, every_s: float) -> None:
        super().__init__(name="sweep-heartbeat", daemon=True)
        self.claims = claims
        self.every_s = every_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            # A database that is away for a moment is tried again at the next beat; the launcher's
            # own thread reports a storage that stays away.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self.claims.stamp()

    def __enter__(self) -> Stamper:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.join(timeout=5.0)
