"""The misnamed-metric check: what the first epoch without the metric says; when a trial stops a launch."""

from __future__ import annotations

import re

import optuna
import pytest
from optuna.trial import TrialState

from sweep.errors import StudyStopped
from sweep.launcher.metric_check import MetricWatch

HISTORY = [{"epoch": 1.0, "val_acc": 0.5}, {"epoch": 2.0, "val_acc": 0.6, "train_loss": 0.3}]


def test_only_the_first_epoch_without_the_metric_names_its_keys() -> None:
    watch = MetricWatch("val_accuracy", "s", "s.toml")
    assert (
        watch.note(HISTORY[1])
        == ' (this epoch logged val_acc, train_loss; [study] metric = "val_accuracy" in s.toml)'
    )
    assert watch.note(HISTORY[1]) == ""


def test_a_trial_that_never_logged_the_metric_stops_the_launch_naming_what_it_logged() -> None:
    said = (
        "trial 4 ended without logging 'val_accuracy' in any of its 2 epochs; it logged train_loss, val_acc"
    )
    with pytest.raises(StudyStopped, match=re.escape(said)):
        MetricWatch("val_accuracy", "s", "s.toml").check(4, HISTORY)
    watch = MetricWatch("val_accuracy", "s", "s.toml")
    assert watch.note(HISTORY[0]) != "" and watch.misnamed(HISTORY)  # a note does not count as logged


def test_no_stop_for_a_trial_that_logged_it_or_logged_nothing_or_once_a_stored_trial_completed() -> None:
    watch = MetricWatch("val_acc", "s", "s.toml")
    assert not watch.misnamed(HISTORY)  # logged it
    assert not watch.misnamed([])  # no epoch at all: an ordinary failure
    other = MetricWatch("val_accuracy", "s", "s.toml")
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.5))
    other.seen_in(study.get_trials(deepcopy=False))
    assert not other.misnamed(HISTORY) and other.note(HISTORY[0]) == ""
    failed = MetricWatch("val_accuracy", "s", "s.toml")
    failed.seen_in([optuna.trial.create_trial(state=TrialState.FAIL)])
    assert failed.misnamed(HISTORY)
