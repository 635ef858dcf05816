"""Report data: a study's trials and their metrics files as pandas frames; no formatting here.

`collect` reads the stored trials once (`source`: one query per table) and each trial's
metrics.jsonl, and returns plain frames that `table` and `html` only draw:

    trials  one row per trial: number, state, value, config (its configuration's number; None for a
            trial sweep did not make), epochs run, epoch seconds, and per metric the
            number the table shows (losses at the last finished epoch, accuracies at the best epoch;
            a program's other metrics at the best epoch of the study's metric)
    curves  one row per (trial, epoch) with the study's metric, for the learning-curve plot
    rows    one row per configuration of the COMPLETE trials: each metric's mean, std and 95% interval
            half-width (Student's t on the n seeds), n, best, and whether its interval of the study's
            metric overlaps the best row's; in launch order, or ranked by the mean with repeats

The table's metric columns: the built-in trainer's (train and val, test when evaluated) for it and
for a program that logs the same four; for any other program, each metric it logs, the study's first.
A column empty in every row is left out.

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

from sweep.gpu_hours import StudyHours, facts_of_frame, study_hours
from sweep.report.confirm import Confirmation, confirmation
from sweep.report.environment import Spread, environment_spread
from sweep.report.gone import VALUES, Gone, config_values_column, split_gone
from sweep.report.intervals import half_width
from sweep.report.savings import PruningSavings, pruning_savings
from sweep.store.records import StudyRecord
from sweep.store.trial_frames import StoredTrials, load_trials
from sweep.study import winner
from sweep.study.plan import study_epochs
from sweep.study.spec import StudySpec, best_of
from trainer.metrics import Epoch, read_epochs
from trainer.paths import RunPaths

LOSSES = ("train_loss", "val_loss", "test_loss")  # shown at the last finished epoch
# train/val shown at their best epoch; test_* at the last epoch that logged them: the trainer's
# test_acc_best_val (best.pt's weights) and test_acc (the final weights), one evaluation each.
ACCURACIES = ("train_acc", "val_acc", "test_acc_best_val", "test_acc")
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc_best_val", "test_acc")
NOT_METRICS = ("epoch", "epoch_seconds", "images_per_second", "lr")  # logged each epoch, not compared
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
    hours: StudyHours | None = None  # GPU-hours attempt by attempt (sacct, manifests): used and wasted

    @property
    def gpu_hours(self) -> float:
        """Epoch seconds times GPUs per trial, in hours."""
        return self.epoch_seconds * self.gpus / 3600


@dataclass(frozen=True)
class ReportData:
    """Everything a report draws, for one study."""

    info: StudyInfo
    trials: pd.DataFrame  # one row per trial (see the module docstring)
    curves: pd.DataFrame  # columns number, epoch, value (the study's metric)
    params: pd.DataFrame  # the stored params, one row per (trial, param): number, name, value, distribution
    rows: pd.DataFrame  # one row per configuration: PARAM columns, n, <metric>, <metric>_std, <metric>_ci,
    # value, value_std, value_ci, finished, config, best, overlaps_best (see `config_rows`)
    shown: tuple[str, ...]  # the params that get a table column: those that differ between rows
    repeats: bool  # some configuration has several trials: show mean ± interval and n, rank by the mean
    totals: Totals
    metrics: tuple[str, ...] = METRICS[:4]  # the table's metric columns, in order
    environment: tuple[Spread, ...] = ()  # how the complete trials' manifests differ (GPU, code, packages)
    confirmation: Confirmation | None = None  # the search's and the confirmed winner (confirmation trials)
    gone: tuple[Gone, ...] = ()  # configurations with complete trials that the study file no longer has
    gone_shown: bool = False  # `--all`: their rows are in the table too
    base: str | None = None  # where [study] base's values came from (`sweep.base.Inherited.source_line`)
    savings: PruningSavings | None = None  # what pruning saved; None when no trial was pruned


def collect(
    study: optuna.Study,
    spec: StudySpec | None,
    *,
    storage: optuna.storages.BaseStorage | None = None,
    show_all: bool = False,
) -> ReportData:
    """Read `study` (and the run dirs its trials name) into frames.

    Args:
        study: The stored study.
        spec: Its study file, or None for a study found only in the storage.
        storage: The study's RDBStorage, for the fast read (`sweep.store.trial_frames`); None: `get_trials`.
        show_all: Keep the rows of configurations the study file no longer has (`--all`).
    """
    stored = load_trials(study, storage)
    info = _info(study, spec, stored)
    frame, curves, logged = trial_frames(stored, info)
    frame[VALUES] = config_values_column(stored.trials, storage, study.study_name)
    info = dataclasses.replace(info, evaluates_test=info.evaluates_test or _has_test(frame))
    metrics = table_metrics(info, logged)
    rows, gone = split_gone(config_rows(frame, info, metrics), spec, info.params, show_all=show_all)
    rows = with_best(rows, info.direction) if gone else rows  # the best of the rows shown
    metrics = filled(metrics, rows)
    repeats = bool(len(rows)) and int(rows["n"].max()) > 1
    if repeats:
        rows = ranked(rows, info.direction)
    facts = facts_of_frame(stored.trials)
    hours = study_hours(facts, info.gpus)
    planned = study_epochs(spec) if spec is not None else None
    return ReportData(
        info=info,
        trials=frame,
        curves=curves,
        params=stored.params,
        rows=rows,
        shown=shown_params(rows, info.params),
        repeats=repeats,
        totals=dataclasses.replace(totals(frame, info), hours=hours),
        metrics=metrics,
        environment=environment_spread(_complete_run_dirs(stored.trials)),
        confirmation=confirmation(frame, info.params, info.direction),
        gone=gone,
        gone_shown=show_all,
        savings=pruning_savings(
            frame, facts, hours, info.gpus, planned, PARAM, method=spec.pruner if spec is not None else None
        ),
    )


def _complete_run_dirs(trials: pd.DataFrame) -> list[tuple[int, Path]]:
    """(number, run dir) of the COMPLETE trials that name one: those the table shows."""
    done = trials[(trials["state"] == "COMPLETE") & trials["run_dir"].notna()]
    return [(int(n), Path(d)) for n, d in zip(done["number"], done["run_dir"], strict=True)]


def table_metrics(info: StudyInfo, logged: tuple[str, ...]) -> tuple[str, ...]:
    """The metric columns: the seed's form, or a program's own metrics (see the module docstring)."""
    if set(METRICS[:4]) <= set(logged):  # the trainer logs all four each epoch; a program of less has its own
        return METRICS if info.evaluates_test else METRICS[:4]
    return tuple(dict.fromkeys([*([info.metric] if info.metric in logged else []), *logged]))


def filled(metrics: tuple[str, ...], rows: pd.DataFrame) -> tuple[str, ...]:
    """The metric columns that hold a number in some row: no column is empty for every row (all of them
    while there are no rows: no table is drawn)."""
    if not len(rows):
        return metrics
    return tuple(metric for metric in metrics if rows[metric].notna().any())


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
        gpus=spec.resources.trial_gpus if spec else stored_gpus if isinstance(stored_gpus, int) else 1,
        gpus_known=spec is not None or isinstance(stored_gpus, int),
    )


def trial_frames(stored: StoredTrials, info: StudyInfo) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """The per-trial frame, the per-epoch frame of the study's metric, and the metrics logged.

    A trial with a metrics file gets its numbers from it; the others from their intermediate values.
    """
    frame = stored.trials[["number", "state", "value", "diverged", "confirm", "config"]].copy()
    wide = stored.params.pivot(index="number", columns="name", values="value")
    for key in info.params:
        column = wide[key] if key in wide else pd.Series(dtype=object)
        frame[PARAM + key] = column.reindex(frame["number"]).to_numpy()
    from_files, file_curves, logged = _from_metrics_files(stored.trials, info)
    steps = stored.steps[~stored.steps["number"].isin(from_files.index)]
    from_steps = _from_steps(steps, info.metric)
    summary = pd.concat([from_files, from_steps]).reindex(frame["number"])
    frame["epochs"] = summary["epochs"].fillna(0).astype(int).to_numpy()
    frame["epoch_seconds"] = summary["epoch_seconds"].fillna(0.0).to_numpy(dtype=float)
    for metric in dict.fromkeys([*METRICS, *logged]):
        frame[metric] = summary[metric].to_numpy(dtype=float) if metric in summary else math.nan
    step_curves = steps.rename(columns={"step": "epoch"})
    curves = pd.concat([file_curves, step_curves]) if len(step_curves) else file_curves
    curves = curves.sort_values(["number", "epoch"], ignore_index=True)
    if not logged and info.metric in METRICS and len(steps):
        logged = (info.metric,)
    return frame, curves, logged


def _from_metrics_files(
    trials: pd.DataFrame, info: StudyInfo
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """Per-trial summaries (indexed by number), the curves of the trials whose run dir has metrics,
    and every metric they logged, in the order first seen."""
    summaries: dict[int, dict[str, Any]] = {}
    curves: list[tuple[int, int, float]] = []
    logged: dict[str, None] = {}
    with_dirs = trials[trials["run_dir"].notna()]
    for number, run_dir in zip(with_dirs["number"], with_dirs["run_dir"], strict=True):
        history = read_epochs(RunPaths(Path(run_dir)).metrics)
        if history:
            summaries[int(number)] = _summary(history, info)
            logged.update(dict.fromkeys(key for e in history for key in e if key not in NOT_METRICS))
            curves += [(int(number), int(e["epoch"]), e[info.metric]) for e in history if info.metric in e]
    columns = ["epochs", "epoch_seconds", *dict.fromkeys([*METRICS, *logged])]
    summary = pd.DataFrame.from_dict(summaries, orient="index", columns=columns)
    return summary, pd.DataFrame.from_records(curves, columns=["number", "epoch", "value"]), tuple(logged)


def _summary(history: list[Epoch], info: StudyInfo) -> dict[str, Any]:
    """The numbers a trial's table row shows: train and val accuracies at their best epoch, losses and test
    metrics at the last epoch that logged them (never a test number picked over epochs), the study's
    metric at its best, other metrics at that best epoch."""
    scored = [e for e in history if math.isfinite(e.get(info.metric, math.nan))]
    best = best_of(scored, info.direction, key=lambda e: e[info.metric]) or history[-1]
    out: dict[str, Any] = {
        "epochs": len(history),
        "epoch_seconds": sum(e.get("epoch_seconds", 0.0) for e in history),
    }
    for key in dict.fromkeys(key for e in history for key in e if key not in NOT_METRICS):
        values = [e[key] for e in history if key in e]
        if key in ("train_acc", "val_acc"):
            out[key] = max(values)
        elif key.startswith("test_") or "loss" in key:
            out[key] = values[-1]
        elif key == info.metric:
            out[key] = best_of(values, info.direction)
        else:
            out[key] = best.get(key, values[-1])
    return out


def _from_steps(steps: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-trial summaries from intermediate values, which hold the study's metric each epoch."""
    grouped = steps.groupby("number")["value"]  # rows are sorted by (number, step): last() is the last epoch
    summary = pd.DataFrame({"epochs": grouped.size(), "epoch_seconds": 0.0})
    if metric in METRICS:
        summary[metric] = grouped.max() if metric in ACCURACIES else grouped.last()
    return summary


def _has_test(frame: pd.DataFrame) -> bool:
    return bool(frame["test_acc"].notna().any())


def config_rows(frame: pd.DataFrame, info: StudyInfo, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """One row per configuration of the COMPLETE trials, in the order their first trial ran.

    Columns: the PARAM columns, n (trials), each metric's mean under its own name, its sample std under
    `<metric>_std` and the half-width of its 95% confidence interval under `<metric>_ci` (both NaN for a
    single trial), the same three for value (the trial value), finished (the trials the value's mean is
    of), config (the configuration's number; NaN for trials sweep did not make), best (the winner by
    `sweep.study.winner`'s rule), and overlaps_best: a row other than the best whose interval of the value
    meets the best row's (a row of one trial has no interval, so it is never told apart from the best).
    """
    # A diverged trial is a result too (the configuration does not train): its row says so
    done = frame[(frame["state"] == "COMPLETE") | frame["diverged"].notna()]
    if VALUES not in done:  # configurations told apart by their params alone
        done = done.assign(**{VALUES: None})
    # the values tell apart configurations of equal params (a fixed value changed between launches);
    # a study with no params at all ([train] run n_trials times) is one configuration
    keys = [PARAM + key for key in info.params] + [VALUES]
    columns = list(dict.fromkeys([*METRICS, *metrics]))
    # a diverged trial's numbers (NaN, or whatever its finite epochs said) are no mean's part
    done = done.copy()
    done.loc[done["diverged"].notna(), [*columns, "value"]] = math.nan
    done["config"] = pd.to_numeric(done["config"], errors="coerce")  # no number (not sweep's): NaN
    grouped = done.groupby(keys, sort=False, dropna=False)
    means = grouped[[*columns, "value"]].mean()
    stds = grouped[[*columns, "value"]].std().add_suffix("_std")
    counts = grouped.size().rename("n")
    diverged = grouped["diverged"].count().rename("diverged")  # trials of the row that diverged
    cis = pd.DataFrame(
        {
            f"{column}_ci": [
                half_width(std, n) for std, n in zip(stds[f"{column}_std"], counts - diverged, strict=True)
            ]
            for column in [*columns, "value"]
        },
        index=stds.index,
        dtype=float,
    )
    # the winner's tie-break (`sweep.study.winner`): the runs a mean is of, the configuration's number
    finished, config = grouped["value"].count().rename("finished"), grouped["config"].min()
    first = grouped["number"].min().rename("first")
    rows = pd.concat([means, stds, cis, counts, diverged, finished, config, first], axis=1)
    rows = rows.sort_values("first").reset_index().drop(columns=["first"])
    return with_best(rows, info.direction)


def with_best(rows: pd.DataFrame, direction: str) -> pd.DataFrame:
    """The rows with their `best` and `overlaps_best` columns (again, once some rows are left out)."""
    rows = rows.copy()
    rows["best"] = _best_mask(rows, direction)
    rows["overlaps_best"] = _overlaps_best(rows)
    return rows


def ranked(rows: pd.DataFrame, direction: str) -> pd.DataFrame:
    """The rows best mean value first (NaN last), ties broken by `sweep.study.winner`'s rule."""
    return rows.iloc[_rank_order(rows, direction)].reset_index(drop=True)


def _rank_order(rows: pd.DataFrame, direction: str) -> list[int]:
    """The rows' positions, best first by `sweep.study.winner.rank_key` (rows that tie in it too: launch
    order)."""
    values = rows["value"].to_numpy(dtype=float)
    finished = rows["finished"].to_numpy(dtype=int)
    configs = rows["config"].fillna(math.inf).to_numpy(dtype=float)
    return sorted(
        range(len(rows)), key=lambda i: winner.rank_key(values[i], finished[i], configs[i], direction)
    )


def _overlaps_best(rows: pd.DataFrame) -> np.ndarray:
    """Per row: not the best, and its interval of the value meets the best row's (no interval: infinite)."""
    overlaps = np.zeros(len(rows), dtype=bool)
    if not rows["best"].any():
        return overlaps
    widths = rows["value_ci"].fillna(math.inf).to_numpy(dtype=float)
    values = rows["value"].to_numpy(dtype=float)
    best = int(np.flatnonzero(rows["best"].to_numpy())[0])
    overlaps = ~(np.abs(values - values[best]) > widths + widths[best])
    overlaps[best] = False
    overlaps &= ~np.isnan(values)
    return overlaps


def _best_mask(rows: pd.DataFrame, direction: str) -> np.ndarray:
    """The winner's row (`sweep.study.winner`); none when no row has a mean."""
    mask = np.zeros(len(rows), dtype=bool)
    if rows["value"].notna().any():
        mask[_rank_order(rows, direction)[0]] = True
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
