"""`sweep status` of a large study: which trials it shows by default, read without loading every trial.

A study of more than SUMMARY_FROM trials is summarized: its counts by state, then its running trials
(an orphaned one, whose job ended with no launcher to deal with it, says so), its last FAILED_SHOWN failed
trials and its BEST_SHOWN best complete ones; `sweep status --all` lists every trial. The counts, the
picks and the GPU-hours come from the one-query-per-table read (`sweep.store.trial_frames`); only
the shown trials are read whole.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial

from sweep._compat import trial_by_number
from sweep.gpu_hours import TrialFacts, facts_of_frame
from sweep.store.trial_frames import load_trials

SUMMARY_FROM = 50  # a study of more trials than this is summarized unless --all
BEST_SHOWN = 10
FAILED_SHOWN = 10  # the last ones


@dataclass(frozen=True)
class Selection:
    """What a summarized status shows of a study."""

    counts: dict[str, int]  # trials by state name
    running: tuple[FrozenTrial, ...]
    failed: tuple[FrozenTrial, ...]  # the last FAILED_SHOWN, in trial order
    best: tuple[FrozenTrial, ...]  # the BEST_SHOWN best COMPLETE trials, best first
    facts: tuple[TrialFacts, ...]  # every trial's, for the GPU-hours

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def select(study: optuna.Study, storage: optuna.storages.BaseStorage) -> Selection | None:
    """The trials a summarized status shows; None for a study of SUMMARY_FROM trials or fewer."""
    stored = load_trials(study, storage)
    frame = stored.trials
    if len(frame) <= SUMMARY_FROM:
        return None
    failed = frame[frame["state"] == "FAIL"]["number"].tolist()[-FAILED_SHOWN:]
    complete = frame[(frame["state"] == "COMPLETE") & frame["value"].notna()]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    # best first; a tie goes to the earlier trial
    best = complete.sort_values(["value", "number"], ascending=[not maximize, True])["number"].tolist()
    # trial by trial: Study.get_trials reads every trial, whatever states it is asked for
    running = frame[frame["state"] == "RUNNING"]["number"].tolist()
    return Selection(
        counts=dict(Counter(frame["state"].tolist())),
        running=_read(study, running),
        failed=_read(study, failed),
        best=_read(study, best[:BEST_SHOWN]),
        facts=tuple(facts_of_frame(frame)),
    )


def _read(study: optuna.Study, numbers: list[int]) -> tuple[FrozenTrial, ...]:
    trials = (trial_by_number(study, int(number)) for number in numbers)
    return tuple(trial for trial in trials if trial is not None)
