"""What pruning saved in a study: the hours its pruned trials used, and what they would have used run to
the end (each pruned trial's remaining epochs at its own time per epoch).

A trial's hours: its GPU-hours (sacct, or its manifests' wall time x GPUs) when the study has GPUs and
they are known; else its epochs' own seconds (`epoch_seconds` of its metrics) x GPUs; else (a program
that logs no epoch time) the wall time from its stored start to its end x GPUs. With `gpus = 0` they
are job-hours: the same times, counted once. A diverged trial is not counted: it was stopped for a NaN,
not by the pruner, and had no end worth running to.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from sweep.gpu_hours import StudyHours, TrialFacts

EPOCHS_PARAM = "epochs"  # a trial's own epochs, when the study varies them


@dataclass(frozen=True)
class PruningSavings:
    """The pruned trials' hours, used and estimated to the end; `full` None when the epochs are unknown."""

    pruned: int
    unit: str  # GPU-hours | job-hours
    used: float
    full: float | None  # what they would have used run to their planned epochs
    epochs_run: int
    epochs_planned: int | None  # over all pruned trials
    method: str | None = None  # the study file's pruner, when the report has the file
    study_used: float | None = None  # every trial's hours (pruned ones as used), for the share of the grid's

    @property
    def saved(self) -> float | None:
        return None if self.full is None else self.full - self.used

    def line(self) -> str:
        """`Pruning saved ...`: one line under the table."""
        used = f"{self.pruned} pruned trial{'s' if self.pruned != 1 else ''} used {self.used:.3f} {self.unit}"
        run = f"{self.epochs_run} epoch{'s' if self.epochs_run != 1 else ''}"
        if self.full is None or self.saved is None:
            return (
                f"Pruning: {used} ({run}); what they would have used to the end is unknown: the study "
                "file does not say their epochs."
            )
        share = f", {100 * self.saved / self.full:.0f}% of them" if self.full > 0 else ""
        method = f" ({self.method.replace('_', ' ')})" if self.method not in (None, "none") else ""
        grid = self.grid_share
        of_grid = (
            f" The study used {100 * grid:.1f}% of the time of all its trials run to the end." if grid else ""
        )
        return (
            f"Pruning{method} saved {self.saved:.3f} {self.unit}{share}: {used} in {run}; run to "
            f"their {self.epochs_planned} epochs they would have used {self.full:.3f} (each one's remaining "
            f"epochs at its own time per epoch).{of_grid}"
        )

    @property
    def grid_share(self) -> float | None:
        """The study's hours as a share of what every trial would have used run to its end."""
        if self.study_used is None or self.saved is None or self.study_used + self.saved <= 0:
            return None
        return self.study_used / (self.study_used + self.saved)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "saved": self.saved, "grid_share": self.grid_share}


def pruning_savings(
    frame: pd.DataFrame,
    facts: list[TrialFacts],
    hours: StudyHours | None,
    gpus: int,
    planned: int | None,
    param_prefix: str,
    method: str | None = None,
) -> PruningSavings | None:
    """The savings of the study whose per-trial frame is `frame` (number, state, diverged, epochs,
    epoch_seconds, the params under `param_prefix`); None when no trial was pruned. `planned`: the
    study's epochs per trial (a trial's own `epochs` param comes first)."""
    by_number = {fact.number: fact for fact in facts}
    pruned = frame[(frame["state"] == "PRUNED") & frame["diverged"].isna()]
    if not len(pruned):
        return None
    unit = "GPU-hours" if gpus > 0 else "job-hours"
    used = full = 0.0
    run = planned_sum = 0
    known = True
    for _, row in pruned.iterrows():
        number, epochs = int(row["number"]), int(row["epochs"])
        spent = _hours(by_number.get(number), hours, gpus, float(row["epoch_seconds"]))
        target = _planned(row, planned, param_prefix)
        used += spent
        run += epochs
        if target is None:
            known = False
            continue
        planned_sum += target
        # its remaining epochs at its own time per epoch; a trial stopped before its first epoch ended
        # has no time per epoch, and is counted at what it used
        full += spent * max(target, epochs) / epochs if epochs else spent
    study_used = sum(
        _hours(by_number.get(int(row["number"])), hours, gpus, float(row["epoch_seconds"]))
        for _, row in frame[frame["state"].isin(["COMPLETE", "PRUNED"])].iterrows()
    )
    return PruningSavings(
        method=method,
        study_used=study_used,
        pruned=len(pruned),
        unit=unit,
        used=used,
        full=full if known else None,
        epochs_run=run,
        epochs_planned=planned_sum if known else None,
    )


def _hours(fact: TrialFacts | None, hours: StudyHours | None, gpus: int, epoch_seconds: float) -> float:
    mine = None if hours is None or fact is None else hours.of(fact.number)
    if gpus > 0 and mine is not None and mine.attempts:
        return mine.used
    if epoch_seconds > 0:
        return epoch_seconds / 3600 * max(gpus, 1)
    if fact is None or fact.start is None or fact.complete is None:
        return 0.0
    return max(0.0, fact.complete - fact.start) / 3600 * max(gpus, 1)


def _planned(row: pd.Series, planned: int | None, prefix: str) -> int | None:
    value = row.get(prefix + EPOCHS_PARAM)
    if value is not None and not (isinstance(value, float) and math.isnan(value)):
        try:
            return int(value)
        except (TypeError, ValueError):
            return planned
    return planned
