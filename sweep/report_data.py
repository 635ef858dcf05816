"""Report data: a study's trials and their metrics files as pandas frames; no formatting here.

`collect` reads the storage once (`get_trials(deepcopy=False)`) and each trial's metrics.jsonl, and
returns plain frames that `report_table` and `report_html` only draw:

    trials  one row per trial: number, state, value, epochs run, epoch seconds, and per metric the
            number the table shows (losses at the last finished epoch, accuracies at the best epoch)
    curves  one row per (trial, epoch) with the validation accuracy, for the learning-curve plot
    rows    one row per configuration of the COMPLETE trials: each metric's mean and std, n, best

A trial without a metrics file (a study only in the storage, or made through Optuna's API) falls back
to its intermediate values, which hold the study's metric per epoch.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from sweep.study import StudySpec
from trainer.metrics import EpochMetrics, read_metrics
from trainer.paths import RunPaths

LOSSES = ("train_loss", "val_loss", "test_loss")  # shown at the last finished epoch
ACCURACIES = ("train_acc", "val_acc", "test_acc")  # shown at the best epoch
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
PARAM = "param."  # prefix of the param columns in the frames: a param may be named like a metric (epochs)


@dataclass(frozen=True)
class StudyInfo:
    """What the report says about a study besides its trials."""

    name: str
    metric: str  # the trials' value: val_acc, val_loss, ... ("value" when the storage does not say)
    direction: str  # maximize | minimize
    params: tuple[str, ...]  # every param of the trials, study-file order first
    evaluates_test: bool  # the study (or any trial) evaluates on the test set
    gpus: int  # GPUs per trial from [resources]; 1 when the study file is not found
    gpus_known: bool  # False: the study file was not found and `gpus` is an assumption


@dataclass(frozen=True)
class Totals:
    """The line under the table: trial counts, epochs and compute."""

    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    epochs: int  # finished epochs over all trials, pruned and failed ones included
    epoch_seconds: float  # their summed wall time, from the metrics files
    gpus: int
    gpus_known: bool

    @property
    def gpu_hours(self) -> float:
        """Epoch seconds times GPUs per trial, in hours."""
        return self.epoch_seconds * self.gpus / 3600


@dataclass(frozen=True)
class ReportData:
    """Everything a report draws, for one study."""

    info: StudyInfo
    trials: pd.DataFrame  # one row per trial (see the module docstring)
    curves: pd.DataFrame  # columns number, epoch, val_acc
    rows: pd.DataFrame  # one row per configuration: PARAM columns, n, <metric>, <metric>_std, value, best
    shown: tuple[str, ...]  # the params that get a table column: those that differ between rows
    repeats: bool  # some configuration has several trials: show mean ± std and n
    totals: Totals


def collect(study: optuna.Study, spec: StudySpec | None) -> ReportData:
    """Read `study` (and the run dirs its trials name) into frames.

    Args:
        study: The stored study.
        spec: Its study file, or None for a study found only in the storage.
    """
    trials = study.get_trials(deepcopy=False)
    info = _info(study, spec, trials)
    frame, curves = trial_frames(trials, info)
    info = StudyInfo(**{**info.__dict__, "evaluates_test": info.evaluates_test or _has_test(frame)})
    rows = config_rows(frame, info)
    return ReportData(
        info=info,
        trials=frame,
        curves=curves,
        rows=rows,
        shown=shown_params(rows, info.params),
        repeats=bool(len(rows)) and int(rows["n"].max()) > 1,
        totals=totals(frame, info),
    )


def _info(study: optuna.Study, spec: StudySpec | None, trials: list[FrozenTrial]) -> StudyInfo:
    metric = str(study.user_attrs.get("metric") or (spec.metric if spec else "value"))
    seen: dict[str, None] = dict.fromkeys(spec.varied_keys if spec else ())
    for trial in trials:
        seen.update(dict.fromkeys(trial.params))
    return StudyInfo(
        name=study.study_name,
        metric=metric,
        direction=study.direction.name.lower(),
        params=tuple(seen),
        evaluates_test=bool(spec and spec.train.get("evaluate_test", False)),
        gpus=spec.resources.gpus if spec else 1,
        gpus_known=spec is not None,
    )


def trial_frames(trials: list[FrozenTrial], info: StudyInfo) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-trial frame and the per-epoch validation-accuracy frame."""
    records: list[dict[str, Any]] = []
    curve_numbers: list[int] = []
    curve_epochs: list[int] = []
    curve_values: list[float] = []
    for trial in trials:
        history = _history(trial)
        record: dict[str, Any] = {"number": trial.number, "state": trial.state.name, "value": trial.value}
        record.update({PARAM + key: trial.params.get(key) for key in info.params})
        if history:
            record.update(_summary(history))
            epochs, values = [m.epoch for m in history], [m.val_acc for m in history]
        else:
            record.update(_summary_from_intermediate(trial, info.metric))
            epochs, values = _intermediate_curve(trial, info.metric)
        records.append(record)
        curve_numbers += [trial.number] * len(epochs)
        curve_epochs += epochs
        curve_values += values
    columns = ["number", "state", "value", *(PARAM + k for k in info.params), "epochs", "epoch_seconds"]
    frame = pd.DataFrame.from_records(records, columns=[*columns, *METRICS])
    frame[["value", "epoch_seconds", *METRICS]] = frame[["value", "epoch_seconds", *METRICS]].astype(float)
    curves = pd.DataFrame({"number": curve_numbers, "epoch": curve_epochs, "val_acc": curve_values})
    return frame, curves


def _history(trial: FrozenTrial) -> list[EpochMetrics]:
    run_dir = trial.user_attrs.get("run_dir")
    return read_metrics(RunPaths(Path(run_dir)).metrics) if run_dir else []


def _summary(history: list[EpochMetrics]) -> dict[str, Any]:
    last = history[-1]
    tested = [m for m in history if m.test_acc is not None]
    return {
        "epochs": len(history),
        "epoch_seconds": sum(m.epoch_seconds for m in history),
        "train_loss": last.train_loss,
        "train_acc": max(m.train_acc for m in history),
        "val_loss": last.val_loss,
        "val_acc": max(m.val_acc for m in history),
        "test_loss": tested[-1].test_loss if tested else math.nan,
        "test_acc": tested[-1].test_acc if tested else math.nan,
    }


def _summary_from_intermediate(trial: FrozenTrial, metric: str) -> dict[str, Any]:
    values = trial.intermediate_values
    out: dict[str, Any] = {"epochs": len(values), "epoch_seconds": 0.0}
    if values and metric in METRICS:
        last = values[max(values)]
        out[metric] = max(values.values()) if metric in ACCURACIES else last
    return out


def _intermediate_curve(trial: FrozenTrial, metric: str) -> tuple[list[int], list[float]]:
    if metric != "val_acc":
        return [], []
    steps = sorted(trial.intermediate_values)
    return steps, [trial.intermediate_values[step] for step in steps]


def _has_test(frame: pd.DataFrame) -> bool:
    return bool(frame["test_acc"].notna().any())


def config_rows(frame: pd.DataFrame, info: StudyInfo) -> pd.DataFrame:
    """One row per configuration of the COMPLETE trials, in the order their first trial ran.

    Columns: the PARAM columns, n (trials), each metric's mean under its own name and its sample std
    under `<metric>_std` (NaN for a single trial), value (the mean trial value) and best.
    """
    done = frame[frame["state"] == "COMPLETE"]
    keys = [PARAM + key for key in info.params]
    if not keys:  # no params at all ([train] run n_trials times): every trial is one configuration
        done = done.assign(_config=0)
        keys = ["_config"]
    grouped = done.groupby(keys, sort=False, dropna=False)
    means = grouped[[*METRICS, "value"]].mean()
    stds = grouped[list(METRICS)].std().add_suffix("_std")
    rows = pd.concat(
        [means, stds, grouped.size().rename("n"), grouped["number"].min().rename("first")], axis=1
    )
    rows = rows.sort_values("first").reset_index().drop(columns=["first"])
    if "_config" in rows:
        rows = rows.drop(columns=["_config"])
    rows["best"] = _best_mask(rows["value"], info.direction)
    return rows


def _best_mask(values: pd.Series, direction: str) -> np.ndarray:
    mask = np.zeros(len(values), dtype=bool)
    if values.notna().any():
        pick = np.nanargmax if direction == "maximize" else np.nanargmin
        mask[int(pick(values.to_numpy(dtype=float)))] = True
    return mask


def shown_params(rows: pd.DataFrame, params: tuple[str, ...]) -> tuple[str, ...]:
    """The params that differ between table rows; all of them when the rows do not differ (one row)."""
    differing = tuple(key for key in params if rows[PARAM + key].nunique(dropna=False) > 1)
    return differing or params


def totals(frame: pd.DataFrame, info: StudyInfo) -> Totals:
    """Trial counts by state, and the epochs and compute of every trial."""
    states = Counter(frame["state"])
    return Totals(
        complete=states["COMPLETE"],
        pruned=states["PRUNED"],
        failed=states["FAIL"],
        running=states["RUNNING"],
        waiting=states["WAITING"],
        epochs=int(frame["epochs"].sum()),
        epoch_seconds=float(frame["epoch_seconds"].sum()),
        gpus=info.gpus,
        gpus_known=info.gpus_known,
    )
