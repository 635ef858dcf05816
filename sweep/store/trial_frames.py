"""A study's stored trials as pandas frames, read with one query per table.

`study.get_trials()` builds an ORM object for every row of every trial table: about 2-4 s for a
10,000-trial SQLite study, more than the whole report may take. For an `RDBStorage` the same rows are
read here with one SELECT per table through Optuna's own table definitions; any other storage (or a
schema this code does not know) goes through `get_trials(deepcopy=False)`, once. A test checks that
both give the same frames.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
import sqlalchemy as sa
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from sweep._compat import rdb_models
from sweep.store import records
from sweep.store.records import TrialRecord

TRIAL_COLUMNS = [
    "number", "state", "value", "run_dir", "diverged", "confirm", "executor", "job_id", "start", "complete",
    "config",
]  # fmt: skip
PARAM_COLUMNS = ["number", "name", "value", "distribution"]
STEP_COLUMNS = ["number", "step", "value"]
_STORED_FLOATS = {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}


@dataclass(frozen=True)
class StoredTrials:
    """The rows of a study's trials that a report uses, each frame sorted by trial number."""

    # number, state (COMPLETE, PRUNED, ...), value (NaN if none), run_dir (None if none), diverged (what,
    # for a trial whose metric became NaN or infinite; else None), confirm (a confirmation trial: bool),
    # executor and job_id (None if none), start and complete (Unix times, NaN if none: for GPU-hours),
    # config (the configuration's number, `sweep.store.configs`; None for a trial sweep did not make)
    trials: pd.DataFrame
    params: pd.DataFrame  # number, name, value (as the trial saw it: "adam", 0.1), distribution (JSON)
    steps: pd.DataFrame  # number, step, value: the intermediate values (the metric reported each epoch)


def load_trials(study: optuna.Study, storage: optuna.storages.BaseStorage | None = None) -> StoredTrials:
    """The trials of `study`; pass its RDBStorage to read them with plain SELECTs (the fast path)."""
    if isinstance(storage, RDBStorage):
        try:
            return _from_tables(storage, storage.get_study_id_from_name(study.study_name))
        except (AttributeError, KeyError, sa.exc.SQLAlchemyError):  # an Optuna schema this code does not know
            pass
    return from_frozen(study.get_trials(deepcopy=False))


def from_frozen(trials: list[FrozenTrial]) -> StoredTrials:
    """The frames of trials already loaded by Optuna."""
    rows = [
        (
            t.number,
            t.state.name,
            _float(t.value),
            _run_dir(t),
            *_said(TrialRecord.of(t)),
            *_times(t),
            TrialRecord.of(t).config,
        )
        for t in trials
    ]
    params = [
        (t.number, name, value, distribution_to_json(t.distributions[name]))
        for t in trials
        for name, value in t.params.items()
    ]
    steps = [(t.number, step, value) for t in trials for step, value in sorted(t.intermediate_values.items())]
    return StoredTrials(
        trials=_frame(rows, TRIAL_COLUMNS),
        params=_frame(params, PARAM_COLUMNS),
        steps=_frame(steps, STEP_COLUMNS),
    )


def _said(record: TrialRecord) -> tuple[str | None, bool, str | None, str | None]:
    return record.diverged, record.confirm, record.executor, record.job_id


def _times(trial: FrozenTrial) -> tuple[float, float]:
    return _time(trial.datetime_start), _time(trial.datetime_complete)


def _time(value: datetime.datetime | str | None) -> float:
    """A stored start or end as a Unix time: Optuna stores naive local times, read as `FrozenTrial` does."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    return value.timestamp()


def _run_dir(trial: FrozenTrial) -> str | None:
    run_dir = TrialRecord.of(trial).run_dir
    return None if run_dir is None else str(run_dir)


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _frame(rows: list[tuple[Any, ...]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=columns)
    if columns is PARAM_COLUMNS:
        frame["value"] = _objects([row[2] for row in rows])  # mixed types ("adam", 0.1, None) as they are
    if columns is TRIAL_COLUMNS:
        frame["run_dir"] = _objects([row[3] for row in rows])
        frame["diverged"] = _objects([row[4] for row in rows])
        frame["confirm"] = np.array([row[5] for row in rows], dtype=bool)
        frame["executor"] = _objects([row[6] for row in rows])
        frame["job_id"] = _objects([row[7] for row in rows])
        frame["config"] = _objects([row[10] for row in rows])
    return frame


def _objects(values: list[Any]) -> np.ndarray:
    """An object array of `values` as they are: pandas would infer a str or float column from some lists."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _from_tables(storage: RDBStorage, study_id: int) -> StoredTrials:
    models = rdb_models()
    trials_t = models.TrialModel.__table__
    values_t = models.TrialValueModel.__table__
    params_t = models.TrialParamModel.__table__
    attrs_t = models.TrialUserAttributeModel.__table__
    steps_t = models.TrialIntermediateValueModel.__table__
    ids = sa.select(trials_t.c.trial_id).where(trials_t.c.study_id == study_id)
    queries = {
        "trials": sa.select(
            trials_t.c.trial_id,
            trials_t.c.number,
            _text(trials_t.c.state),
            trials_t.c.datetime_start,
            trials_t.c.datetime_complete,
        ).where(trials_t.c.study_id == study_id),
        "values": sa.select(values_t.c.trial_id, values_t.c.value, _text(values_t.c.value_type)).where(
            values_t.c.trial_id.in_(ids), values_t.c.objective == 0
        ),
        "params": sa.select(
            params_t.c.trial_id, params_t.c.param_name, params_t.c.param_value, params_t.c.distribution_json
        )
        .where(params_t.c.trial_id.in_(ids))
        .order_by(params_t.c.param_id),  # the order the trial set them in, as get_trials gives them
        "run_dirs": sa.select(attrs_t.c.trial_id, attrs_t.c.value_json).where(
            attrs_t.c.trial_id.in_(ids), attrs_t.c.key == records.RUN_DIR
        ),
        "diverged": sa.select(attrs_t.c.trial_id, attrs_t.c.value_json).where(
            attrs_t.c.trial_id.in_(ids), attrs_t.c.key == records.DIVERGED
        ),
        "confirm": sa.select(attrs_t.c.trial_id, attrs_t.c.value_json).where(
            attrs_t.c.trial_id.in_(ids), attrs_t.c.key == records.CONFIRM
        ),
        "jobs": sa.select(attrs_t.c.trial_id, attrs_t.c.key, attrs_t.c.value_json).where(
            attrs_t.c.trial_id.in_(ids), attrs_t.c.key.in_([records.EXECUTOR, records.JOB_ID, records.CONFIG])
        ),
        "steps": sa.select(
            steps_t.c.trial_id,
            steps_t.c.step,
            steps_t.c.intermediate_value,
            _text(steps_t.c.intermediate_value_type),
        ).where(steps_t.c.trial_id.in_(ids)),
    }
    with storage.engine.connect() as conn:
        rows = {name: _fetch_all(conn, query) for name, query in queries.items()}
    return _assemble(**rows)


def _fetch_all(conn: sa.Connection, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """The rows as the DB-API driver gives them (plain tuples), skipping SQLAlchemy's Row objects.

    SQLAlchemy fetches and wraps rows one by one (0.4 s for 100k), and pandas then probes each Row's
    attributes (2 s); the driver's fetchall() is a single C call. The query's parameters are literal
    numbers and names, compiled into the SQL.
    """
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        cursor.close()


def _text(column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    # enum columns read as plain strings: SQLAlchemy's per-row enum conversion costs ~0.3 s per 100k rows
    return sa.type_coerce(column, sa.String()).label(column.name)


def _assemble(
    trials: list[Any],
    values: list[Any],
    params: list[Any],
    run_dirs: list[Any],
    diverged: list[Any],
    confirm: list[Any],
    jobs: list[Any],
    steps: list[Any],
) -> StoredTrials:
    """The query rows as frames, converted column by column (no Python loop over rows)."""
    frame = pd.DataFrame.from_records(trials, columns=["trial_id", "number", "state", "start", "complete"])
    frame["start"] = [_time(value) for value in frame["start"].tolist()]
    frame["complete"] = [_time(value) for value in frame["complete"].tolist()]
    number = pd.Series(frame["number"].to_numpy(), index=frame["trial_id"].to_numpy())
    value = pd.DataFrame.from_records(values, columns=["trial_id", "value", "kind"])
    frame["value"] = frame["trial_id"].map(pd.Series(_floats(value), index=value["trial_id"].to_numpy()))
    run_dir = pd.DataFrame.from_records(run_dirs, columns=["trial_id", "json"])
    paths = pd.Series(run_dir["json"].map(json.loads).to_numpy(), index=run_dir["trial_id"].to_numpy())
    mapped = frame["trial_id"].map(paths)
    frame["run_dir"] = _objects([path if isinstance(path, str) else None for path in mapped.tolist()])
    said = {trial_id: json.loads(text) for trial_id, text in diverged}
    frame["diverged"] = _objects([said.get(trial_id) for trial_id in frame["trial_id"].tolist()])
    confirmed = {trial_id for trial_id, text in confirm if json.loads(text) is True}
    frame["confirm"] = frame["trial_id"].isin(confirmed).to_numpy(dtype=bool)
    for key, column in ((records.EXECUTOR, "executor"), (records.JOB_ID, "job_id")):
        found = {trial_id: json.loads(text) for trial_id, name, text in jobs if name == key}
        frame[column] = _objects([_text_or_none(found.get(i)) for i in frame["trial_id"].tolist()])
    numbered = {trial_id: json.loads(text) for trial_id, name, text in jobs if name == records.CONFIG}
    frame["config"] = _objects([_int_or_none(numbered.get(i)) for i in frame["trial_id"].tolist()])
    param = pd.DataFrame.from_records(params, columns=["trial_id", "name", "internal", "distribution"])
    param["number"] = param["trial_id"].map(number)
    param["value"] = _external(param)
    step = pd.DataFrame.from_records(steps, columns=["trial_id", "step", "value", "kind"])
    step["number"] = step["trial_id"].map(number)
    step["value"] = _floats(step)
    return StoredTrials(
        trials=frame[TRIAL_COLUMNS].sort_values("number", ignore_index=True),
        params=param[PARAM_COLUMNS].sort_values("number", kind="stable", ignore_index=True),
        steps=step[STEP_COLUMNS].sort_values(["number", "step"], ignore_index=True),
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _floats(frame: pd.DataFrame) -> np.ndarray:
    """Stored floats: infinities and NaN are a type tag (`kind`) with no value."""
    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    for kind, special in _STORED_FLOATS.items():
        values = np.where(frame["kind"].to_numpy() == kind, special, values)
    return values


def _external(param: pd.DataFrame) -> pd.Series:
    """Each param's value as the trial saw it: the stored float is a choice's index for categoricals."""
    out = pd.Series([None] * len(param), index=param.index, dtype=object)
    for text, rows in param.groupby("distribution", sort=False).groups.items():
        dist = distribution(str(text))
        internal = param.loc[rows, "internal"].to_numpy(dtype=float)
        if isinstance(dist, CategoricalDistribution):
            choices = np.empty(len(dist.choices), dtype=object)  # not np.array(choices): keeps int/str/None
            choices[:] = list(dist.choices)
            external = choices[internal.astype(int)]
        elif isinstance(dist, IntDistribution):
            external = internal.astype(int).astype(object)
        else:
            external = internal.astype(object)
        out.loc[rows] = external
    return out


@functools.cache
def distribution(distribution_json: str) -> BaseDistribution:
    """The distribution of a stored JSON text (cached: a study has a handful of distinct ones)."""
    return json_to_distribution(distribution_json)
