"""Configurations the study file no longer has: their trials stay in the storage, the table shows the
file's configurations and names the others under it (`sweep report --all` shows their rows too).

A trial's configuration is its values (`sweep.store.configs`): a row is the file's when its values are one of
the file's configurations' values. Trials whose configuration has no stored values (a study stored
before `sweep_configs`, or not made by sweep) are always shown, as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
from optuna.storages import RDBStorage

from sweep.store import configs
from sweep.study.identity import planned_configs
from sweep.study.spec import StudySpec

PARAM = "param."  # as `sweep.report.data`'s
VALUES = "config_values"


@dataclass(frozen=True)
class Gone:
    """A configuration no longer in the study file, by what tells it apart: its params, then the fixed
    values that differ from the file's ((key, value) pairs)."""

    values: tuple[tuple[str, Any], ...]
    n: int  # its complete trials


def config_values_column(
    trials: pd.DataFrame, storage: optuna.storages.BaseStorage | None, name: str
) -> list[str | None]:
    """Each trial's configuration's values (canonical JSON) as stored in `sweep_configs`; None: unknown."""
    if not isinstance(storage, RDBStorage):
        return [None] * len(trials)
    by_number = {
        row.config: row.values for row in configs.read(storage, storage.get_study_id_from_name(name))
    }
    return [
        by_number.get(config) if isinstance(config, int) else None for config in trials["config"].tolist()
    ]


def split_gone(
    rows: pd.DataFrame, spec: StudySpec | None, params: tuple[str, ...], *, show_all: bool
) -> tuple[pd.DataFrame, tuple[Gone, ...]]:
    """The rows to show (without their values column) and the configurations no longer in the file."""
    if spec is None or not rows[VALUES].notna().any():
        return rows.drop(columns=[VALUES]), ()
    planned = planned_configs(spec)
    in_file = {config.values for config in planned}
    kept = rows[VALUES].isna() | rows[VALUES].isin(in_file)
    fixed = json.loads(planned[0].values) if planned else {}
    gone = tuple(Gone(_telling(row, params, fixed), int(row["n"])) for _, row in rows[~kept].iterrows())
    shown = rows if show_all else rows[kept].reset_index(drop=True)
    return shown.drop(columns=[VALUES]), gone


def _telling(row: pd.Series, params: tuple[str, ...], fixed: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    values = json.loads(row[VALUES])
    named = [(key, row[PARAM + key]) for key in params if not pd.isna(row[PARAM + key])]
    differ = [(key, value) for key, value in values.items() if key not in params and fixed.get(key) != value]
    return tuple(named + sorted(differ))
