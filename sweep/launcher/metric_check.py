"""A misnamed [study] metric, caught at the first epoch: the keys a trial's program logs are known then.

The launcher says at the first epoch line that lacks the metric which keys that epoch has, and stops
the launch at the first trial that ends without ever logging it, unless some trial of the study did
log it (then the metric's name is right and that trial's program is at fault: an ordinary failure).
"""

from __future__ import annotations

from collections.abc import Iterable

from optuna.trial import FrozenTrial, TrialState

from sweep.errors import StudyStopped
from trainer.metrics import Epoch


def logged_keys(history: list[Epoch]) -> list[str]:
    """The metric names the epochs logged, sorted (without `epoch`)."""
    return sorted({key for epoch in history for key in epoch} - {"epoch"})


def _keys_text(keys: list[str]) -> str:
    return ", ".join(keys) if keys else "no metric"


class MetricWatch:
    """Whether a study's metric was ever logged, and what to say when an epoch or a trial lacks it."""

    def __init__(self, metric: str, study: str, source: str) -> None:
        self.metric = metric
        self.study = study
        self.source = source
        self.seen = False  # some trial of the study logged the metric
        self.noted = False  # the first epoch line without it was explained

    def seen_in(self, trials: Iterable[FrozenTrial]) -> None:
        """Count a stored trial that completed or reported a value as the metric logged."""
        if any(t.state == TrialState.COMPLETE or t.intermediate_values for t in trials):
            self.seen = True

    def note(self, record: Epoch) -> str:
        """What the first epoch line without the metric adds: the keys the epoch has; "" after that, and
        for an epoch that has it (the metric then counts as logged)."""
        if self.metric in record:
            self.seen = True
        if self.noted or self.seen:
            return ""
        self.noted = True
        keys = [key for key in record if key != "epoch"]
        return f' (this epoch logged {_keys_text(keys)}; [study] metric = "{self.metric}" in {self.source})'

    def misnamed(self, history: list[Epoch]) -> bool:
        """Whether a trial that ended with `history` shows the metric misnamed: it logged epochs, none
        with the metric, and no trial of the study logged it."""
        return not self.seen and bool(history) and not any(self.metric in epoch for epoch in history)

    def check(self, number: int, history: list[Epoch]) -> None:
        """Stop the launch (StudyStopped) when trial `number`, ended with `history`, shows it misnamed."""
        if self.misnamed(history):
            raise StudyStopped(
                f"{self.study}: trial {number} ended without logging '{self.metric}' in any of its "
                f"{len(history)} epochs; it logged {_keys_text(logged_keys(history))}. Set [study] metric "
                f"in {self.source} to the name the program logs (or log '{self.metric}'); the running "
                "trials were stopped"
            )
