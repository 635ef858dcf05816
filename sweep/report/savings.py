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
        return (
            f"Pruning saved {self.saved:.3f} {self.unit}{share}: {used} in {run}; run to "
            f"their {self.epochs_planned} epochs they would have used {self.full:.3f} (each one's remaining "
            "epochs at its own time per epoch)."
        )

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "saved": self.saved}


def pruning_savings(
    frame: pd.DataFrame,
    facts: list[TrialFacts],
    hours: StudyHours | None,
    gpus: int,
    planned: int | None,
    param_prefix: str,
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
    return PruningSavings(
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
