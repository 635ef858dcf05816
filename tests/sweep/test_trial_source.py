"""Where a launcher's next trial comes from (queued, planned, sampled, confirmation), on a real SQLite
study with its claims table: no job runs, each trial is told its result by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from sweep._compat import rdb_storage, study_id, trial_id
from sweep.launcher import source as trial_source
from sweep.store.claims import Claims, Holder
from sweep.store.records import TrialRecord
from sweep.store.storage import open_storage, open_study
from sweep.study import StudySpec, load_study
from sweep.study.plan import make_sampler
from tests.sweep.conftest import write_study


def _never(_: Holder) -> bool:
    return False


def _spec(tmp_path: Path, **study: Any) -> StudySpec:
    space = study.pop("space", {"lr": [0.1, 0.2, 0.3]})
    return load_study(write_study(tmp_path / "source.toml", study={"name": "source", **study}, space=space))


def _study(tmp_path: Path, spec: StudySpec) -> optuna.Study:
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    return open_study(
        spec.name,
        open_storage(url, create=True),
        direction=spec.direction,
        sampler=make_sampler(spec),
        pruner=optuna.pruners.NopPruner(),
        url=url,
    )


def _source(spec: StudySpec, study: optuna.Study, launcher: str) -> trial_source.TrialSource:
    claims = Claims(rdb_storage(study), study_id(study), launcher)
    source = trial_source.TrialSource(spec, study, claims, _never, executor="debug", launcher=launcher)
    source.reconcile(study.get_trials(deepcopy=False))
    return source


def _runs(trials: list[optuna.Trial]) -> list[tuple[int | None, int]]:
    return [TrialRecord.of(trial).key for trial in trials]


def _drain(source: trial_source.TrialSource) -> list[optuna.Trial]:
    out = []
    while (trial := source.next()) is not None:
        out.append(trial)
        assert len(out) < 50, "the source never ran dry"
    return out


def test_a_grid_runs_each_configuration_and_seed_once_created_running_and_claimed(tmp_path: Path) -> None:
    spec = _spec(tmp_path, sampler="grid", repeats=2)
    study = _study(tmp_path, spec)
    source = _source(spec, study, "a:1/1")
    trials = _drain(source)
    assert _runs(trials) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert [t.params["lr"] for t in trials] == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3]
    stored = study.get_trials(deepcopy=False)
    assert [t.state for t in stored] == [TrialState.RUNNING] * 6
    record = TrialRecord.of(stored[3])
    assert (record.executor, record.launcher, record.confirm) == ("debug", "a:1/1", False)
    for trial in trials:  # each run's claim is this launcher's and points at its trial
        holder = source.claims.holder(*TrialRecord.of(trial).key)  # type: ignore[arg-type]
        assert holder is not None and (holder.launcher, holder.trial_id) == ("a:1/1", trial_id(trial))
    assert source.next() is None


def test_two_launchers_on_one_grid_never_start_the_same_run(tmp_path: Path) -> None:
    spec = _spec(tmp_path, sampler="grid")
    study = _study(tmp_path, spec)
    first, second = _source(spec, study, "a:1/1"), _source(spec, study, "b:2/2")  # both list all three
    one = first.next()
    two = second.next()  # its list still holds config 0: the stored trials (and the claim) skip it
    three = first.next()  # its list still holds config 1
    assert _runs([one, two, three]) == [(0, 0), (1, 0), (2, 0)]  # type: ignore[list-item]
    assert first.next() is None and second.next() is None
    assert len(study.get_trials(deepcopy=False)) == 3


def test_a_failed_planned_configuration_is_run_again_a_complete_one_never(tmp_path: Path) -> None:
    spec = _spec(tmp_path, sampler="grid")
    study = _study(tmp_path, spec)
    trials = _drain(_source(spec, study, "a:1/1"))
    study.tell(trials[0], 0.5)
    study.tell(trials[1], state=TrialState.FAIL)
    study.tell(trials[2], state=TrialState.PRUNED)
    again = _drain(_source(spec, study, "b:2/2"))
    assert _runs(again) == [(1, 0)] and again[0].params == {"lr": 0.2}


def test_sampled_configurations_run_their_seeds_next_and_stop_at_n_trials(tmp_path: Path) -> None:
    spec = _spec(tmp_path, sampler="random", n_trials=3, repeats=2, space={"lr": {"low": 0.01, "high": 1.0}})
    study = _study(tmp_path, spec)
    trials = _drain(_source(spec, study, "a:1/1"))
    assert _runs(trials) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    for seed0, seed1 in zip(trials[::2], trials[1::2], strict=True):  # one configuration, two seeds
        assert seed0.params == seed1.params
    assert len({t.params["lr"] for t in trials}) == 3
    # A sampled configuration whose trial failed is not sampled again: its index is used up
    study.tell(trials[4], state=TrialState.FAIL)
    for trial in [*trials[:4], trials[5]]:
        study.tell(trial, 0.5)
    assert _drain(_source(spec, study, "b:2/2")) == []


def test_a_queued_trial_runs_once_and_a_launcher_that_finds_the_queue_emptied_fails_its_stray(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path, sampler="grid", space={"lr": [0.1]})
    study = _study(tmp_path, spec)
    # An older sweep enqueued its planned trial; two launchers both count it as waiting
    study.enqueue_trial({"lr": 0.1}, user_attrs={"config": 0, "repeat": 0})
    first, second = _source(spec, study, "a:1/1"), _source(spec, study, "b:2/2")
    assert (first.waiting, second.waiting, list(first.pending)) == (1, 1, [])
    queued = first.next()
    assert queued is not None and _runs([queued]) == [(0, 0)] and queued.params == {"lr": 0.1}
    assert second.next() is None  # the queue was empty: Optuna's fresh trial is failed, nothing runs
    stored = study.get_trials(deepcopy=False)
    assert [t.state for t in stored] == [TrialState.RUNNING, TrialState.FAIL]
    assert TrialRecord.of(stored[1]).traceback == trial_source.QUEUE_TAKEN


@pytest.mark.parametrize(
    ("direction", "metric", "best"), [("maximize", "val_acc", 0.3), ("minimize", "val_loss", 0.1)]
)
def test_confirmation_trials_come_after_the_search_once_a_trial_ended(
    tmp_path: Path, direction: str, metric: str, best: float
) -> None:
    spec = _spec(
        tmp_path, sampler="grid", metric=metric, direction=direction, confirm_top=1, confirm_repeats=2
    )
    study = _study(tmp_path, spec)
    source = _source(spec, study, "a:1/1")
    search = _drain(source)
    assert _runs(search) == [(0, 0), (1, 0), (2, 0)]
    for trial in search:
        study.tell(trial, trial.params["lr"])  # the value grows with lr
    assert source.next() is None  # no trial ended as far as the source knows: it does not look again
    source.ended()
    confirm = _drain(source)
    config = [0.1, 0.2, 0.3].index(best)  # the best by the study's direction, seeds 1 and 2
    assert _runs(confirm) == [(config, 1), (config, 2)]
    assert all(t.params["lr"] == best for t in confirm)
    assert all(TrialRecord.of(t).confirm for t in confirm)
    source.ended()
    assert source.next() is None  # confirmed once, not again
