"""Report data: a study's trials and their metrics files as pandas frames; no formatting here.

`collect` reads the stored trials once (`source`: one query per table) and each trial's
metrics.jsonl, and returns plain frames that `table` and `html` only draw:

    trials  one row per trial: number, state, value, epochs run, epoch seconds, and per metric the
            number the table shows (losses at the last finished epoch, accuracies at the best epoch)
    curves  one row per (trial, epoch) with the validation accuracy, for the learning-curve plot
    rows    one row per configuration of the COMPLETE trials: each metric's mean and std, n, best

A trial without a metrics file (a study only in the storage, or made through Optuna's API) falls back
to its intermediate values, which hold the study's metric per epoch.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from sweep.records import StudyRecord
from sweep.report.source import StoredTrials, load_trials
from sweep.study.spec import StudySpec
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
    gpus: int  # GPUs per trial from [resources] (the file's, else the last launch's); else 1
    gpus_known: bool  # False: neither the study file nor the storage says, and `gpus` is an assumption


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
    params: pd.DataFrame  # the stored params, one row per (trial, param): number, name, value, distribution
    rows: pd.DataFrame  # one row per configuration: PARAM columns, n, <metric>, <metric>_std, value, best
    shown: tuple[str, ...]  # the params that get a table column: those that differ between rows
    repeats: bool  # some configuration has several trials: show mean ± std and n
    totals: Totals


def collect(
    study: optuna.Study, spec: StudySpec | None, *, storage: optuna.storages.BaseStorage | None = None
) -> ReportData:
    """Read `study` (and the run dirs its trials name) into frames.

    Args:
        study: The stored study.
        spec: Its study file, or None for a study found only in the storage.
        storage: The study's RDBStorage, for the fast read (see `sweep.report.source`); None: `get_trials`.
    """
    stored = load_trials(study, storage)
    info = _info(study, spec, stored)
    frame, curves = trial_frames(stored, info)
    info = dataclasses.replace(info, evaluates_test=info.evaluates_test or _has_test(frame))
    rows = config_rows(frame, info)
    return ReportData(
        info=info,
        trials=frame,
        curves=curves,
        params=stored.params,
        rows=rows,
        shown=shown_params(rows, info.params),
        repeats=bool(len(rows)) and int(rows["n"].max()) > 1,
        totals=totals(frame, info),
    )


def _info(study: optuna.Study, spec: StudySpec | None, stored: StoredTrials) -> StudyInfo:
    record = StudyRecord.of(study)
    metric = record.metric or (spec.metric if spec else "value")
    names = dict.fromkeys([*(spec.varied_keys if spec else ()), *stored.params["name"].unique()])
    # Without the study file, what `sweep launch` stored with the study says as much.
    stored_gpus = record.gpus
    train = spec.train if spec else (record.plan or {}).get("train", {})
    return StudyInfo(
        name=study.study_name,
        metric=metric,
        direction=study.direction.name.lower(),
        params=tuple(names),
        evaluates_test=bool(train.get("evaluate_test", False)),
        gpus=spec.resources.gpus if spec else stored_gpus if isinstance(stored_gpus, int) else 1,
        gpus_known=spec is not None or isinstance(stored_gpus, int),
    )


def trial_frames(stored: StoredTrials, info: StudyInfo) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-trial frame and the per-epoch validation-accuracy frame.

    A trial with a metrics file gets its numbers from it; the others from their intermediate values.
    """
    frame = stored.trials[["number", "state", "value"]].copy()
    wide = stored.params.pivot(index="number", columns="name", values="value")
    for key in info.params:
        column = wide[key] if key in wide else pd.Series(dtype=object)
        frame[PARAM + key] = column.reindex(frame["number"]).to_numpy()
    from_files, file_curves = _from_metrics_files(stored.trials)
    steps = stored.steps[~stored.steps["number"].isin(from_files.index)]
    from_steps = _from_steps(steps, info.metric)
    summary = pd.concat([from_files, from_steps]).reindex(frame["number"])
    frame["epochs"] = summary["epochs"].fillna(0).astype(int).to_numpy()
    frame["epoch_seconds"] = summary["epoch_seconds"].fillna(0.0).to_numpy(dtype=float)
    for metric in METRICS:
        frame[metric] = summary[metric].to_numpy(dtype=float) if metric in summary else math.nan
    step_curves = steps.rename(columns={"step": "epoch", "value": "val_acc"})
    curves = pd.concat([file_curves, step_curves if info.metric == "val_acc" else step_curves.iloc[:0]])
    curves = curves.sort_values(["number", "epoch"], ignore_index=True)
    return frame, curves


def _from_metrics_files(trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-trial summaries (indexed by number) and curves of the trials whose run dir has metrics."""
    summaries: dict[int, dict[str, Any]] = {}
    curves: list[tuple[int, int, float]] = []
    with_dirs = trials[trials["run_dir"].notna()]
    for number, run_dir in zip(with_dirs["number"], with_dirs["run_dir"], strict=True):
        history = read_metrics(RunPaths(Path(run_dir)).metrics)
        if history:
            summaries[int(number)] = _summary(history)
            curves += [(int(number), m.epoch, m.val_acc) for m in history]
    summary = pd.DataFrame.from_dict(summaries, orient="index", columns=["epochs", "epoch_seconds", *METRICS])
    return summary, pd.DataFrame.from_records(curves, columns=["number", "epoch", "val_acc"])


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


def _from_steps(steps: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-trial summaries from intermediate values, which hold the study's metric each epoch."""
    grouped = steps.groupby("number")["value"]  # rows are sorted by (number, step): last() is the last epoch
    summary = pd.DataFrame({"epochs": grouped.size(), "epoch_seconds": 0.0})
    if metric in METRICS:
        summary[metric] = grouped.max() if metric in ACCURACIES else grouped.last()
    return summary


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
