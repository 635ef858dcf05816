"""Which RUNNING trials a launcher takes over from its peers, and which of its own it lost, on a real SQLite
study and its claims table. Peers are named on another host, so their heartbeat alone says whether they
are alive (`sweep.store.owners`); no job runs."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import sqlalchemy as sa

from sweep._compat import rdb_storage, study_id, trial_id
from sweep.executors.debug import DebugExecutor
from sweep.launcher import takeover
from sweep.store import owners
from sweep.store.claims import CLAIMS, Claims, Holder
from sweep.store.owners import HEARTBEAT_STALE_S
from sweep.store.records import TrialRecord
from tests.sweep.conftest import random_study

ME, PEER, OTHER = "me.example:10/1", "peer.example:20/2", "other.example:30/3"


def _never(_: Holder) -> bool:
    return False


def _study(tmp_path: Path) -> optuna.Study:
    return random_study("takeover", f"sqlite:///{tmp_path / 'sweep.db'}")


def _claims(study: optuna.Study, launcher: str) -> Claims:
    return Claims(rdb_storage(study), study_id(study), launcher)


def _peers(
    study: optuna.Study, launcher: str, lines: list[str], predecessors: frozenset[str] = frozenset()
) -> takeover.TakeOver:
    return takeover.TakeOver(study, _claims(study, launcher), DebugExecutor(), lines.append, predecessors)


def _running(
    study: optuna.Study, launcher: str, config: int, *, run_dir: Path | None = None, job_id: str | None = None
) -> optuna.Trial:
    """A RUNNING trial of run (config, 0) that `launcher` claimed and watches, one epoch reported."""
    claims = _claims(study, launcher)
    assert claims.claim(config, 0, may_take=_never)
    trial = study.ask()
    for key, value in {"config": config, "repeat": 0, "executor": "local", "launcher": launcher}.items():
        trial.set_user_attr(key, value)
    if run_dir is not None:
        trial.set_user_attr("run_dir", str(run_dir))
    if job_id is not None:
        trial.set_user_attr("job_id", job_id)
    trial.report(0.4, 1)
    trial.report(0.5, 2)
    claims.bind(config, 0, trial_id(trial))
    return trial


def _silent(study: optuna.Study, launcher: str, seconds: float = HEARTBEAT_STALE_S + 60) -> None:
    """`launcher` last stamped its claims `seconds` ago: on another host, that is a dead launcher."""
    with rdb_storage(study).engine.begin() as conn:
        conn.execute(
            sa.update(CLAIMS).where(CLAIMS.c.launcher == launcher).values(stamped=time.time() - seconds)
        )


def _frozen(study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    return study.get_trials(deepcopy=False)[trial.number]


def test_a_trial_of_a_live_launcher_is_left_and_said_once(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = _running(study, PEER, 0, run_dir=tmp_path / "0", job_id="123")
    lines: list[str] = []
    peers = _peers(study, ME, lines)
    assert peers.take(_frozen(study, trial)) is None
    assert peers.take(_frozen(study, trial)) is None
    assert lines == [f"trial 0 is watched by the running launcher {PEER}; leaving it"]
    holder = peers.claims.holder(0, 0)
    assert holder is not None and holder.launcher == PEER
    assert TrialRecord.of(_frozen(study, trial)).launcher == PEER


def test_a_trial_of_a_silent_launcher_is_taken_with_its_job_and_last_epoch(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = _running(study, PEER, 0, run_dir=tmp_path / "0", job_id="123")
    _silent(study, PEER)
    lines: list[str] = []
    taken = _peers(study, ME, lines).take(_frozen(study, trial))
    assert taken is not None and lines == []
    assert (taken.trial.number, taken.job_id, taken.kind) == (0, "123", "local")
    assert (taken.run_dir, taken.repeat, taken.reported) == (tmp_path / "0", 0, 2)
    holder = _claims(study, ME).holder(0, 0)
    assert holder is not None and (holder.launcher, holder.trial_id) == (ME, trial_id(trial))
    assert TrialRecord.of(_frozen(study, trial)).launcher == ME
    # the peer, back, may not take it back: this launcher is alive (it just stamped)
    assert _peers(study, PEER, []).take(_frozen(study, trial)) is None


def test_a_trial_stopped_before_its_job_was_stored_is_taken_to_be_submitted_again(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = _running(study, PEER, 0)  # no run dir, no job id: the launcher died before `submit`
    _silent(study, PEER)
    taken = _peers(study, ME, []).take(_frozen(study, trial))
    assert taken is not None and (taken.job_id, taken.run_dir) == (None, None)


def test_a_restarted_launcher_takes_back_its_predecessors_trials_at_once(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = _running(study, PEER, 0, run_dir=tmp_path / "0", job_id="123")  # stamped just now
    assert _peers(study, ME, []).take(_frozen(study, trial)) is None  # not a predecessor: alive
    taken = _peers(study, ME, [], predecessors=frozenset({PEER})).take(_frozen(study, trial))
    assert taken is not None and taken.job_id == "123"


def test_of_two_launchers_taking_over_the_same_trial_one_wins(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = _running(study, PEER, 0, run_dir=tmp_path / "0", job_id="123")
    _silent(study, PEER)
    frozen = _frozen(study, trial)  # both read the trial while its launcher was the silent one
    mine, others = _peers(study, ME, []), _peers(study, OTHER, [])
    assert mine.take(frozen) is not None
    assert others.take(frozen) is None
    holder = mine.claims.holder(0, 0)
    assert holder is not None and holder.launcher == ME


def test_a_trial_from_before_claims_is_judged_by_its_stored_launcher_and_heartbeat(tmp_path: Path) -> None:
    study = _study(tmp_path)
    fresh, stale = study.ask(), study.ask()
    for config, (trial, beat) in enumerate(
        [(fresh, time.time()), (stale, time.time() - HEARTBEAT_STALE_S - 60)]
    ):
        for key, value in {"config": config, "repeat": 0, "launcher": PEER, "heartbeat": beat}.items():
            trial.set_user_attr(key, value)
    peers = _peers(study, ME, [])
    assert peers.take(_frozen(study, fresh)) is None
    assert peers.take(_frozen(study, stale)) is not None
    holder = peers.claims.holder(1, 0)  # its claim is made now, this launcher's
    assert holder is not None and (holder.launcher, holder.trial_id) == (ME, trial_id(stale))
    assert peers.claims.holder(0, 0) is None


def test_a_trial_not_made_by_sweep_is_never_taken(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()  # no config: another tool's
    assert _peers(study, ME, []).take(_frozen(study, trial)) is None


def test_a_launcher_silent_too_long_learns_which_trials_it_lost_and_leaves_them(tmp_path: Path) -> None:
    study = _study(tmp_path)
    lost, kept = _running(study, PEER, 0), _running(study, PEER, 1)
    _silent(study, PEER)
    assert _peers(study, ME, []).take(_frozen(study, lost)) is not None
    lines: list[str] = []
    back = _peers(study, PEER, lines)
    assert back.lost({lost.number: (0, 0), kept.number: (1, 0)}) == [lost.number]
    assert lines == [
        f"trial {lost.number} is now watched by launcher {ME} (this launcher was silent too long); left"
    ]
    assert [t.number for t in back.unwatched({kept.number})] == [lost.number]


# The stale limit's boundary, on the clock `owners` reads (given here): a peer stamps every 30 s and is
# dead once its heartbeat is 120 s old. The ages are written out, so a limit moved by a second fails them.
NOW = 1_700_000_000.0
BOUNDARY = [(60.0, False), (90.0, False), (119.5, False), (120.0, True), (120.5, True)]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owners, "time", SimpleNamespace(time=lambda: NOW))


def _stamped(study: optuna.Study, launcher: str, at: float) -> None:
    with rdb_storage(study).engine.begin() as conn:
        conn.execute(sa.update(CLAIMS).where(CLAIMS.c.launcher == launcher).values(stamped=at))


@pytest.mark.parametrize(("age_s", "taken"), BOUNDARY)
def test_a_running_trial_changes_hands_only_once_its_launchers_heartbeat_is_120_s_old(
    tmp_path: Path, clock: None, age_s: float, taken: bool
) -> None:
    study = _study(tmp_path)
    trial = _running(study, PEER, 0, run_dir=tmp_path / "0", job_id="123")
    _stamped(study, PEER, NOW - age_s)  # missed a beat or two: alive; four: dead
    lines: list[str] = []
    peers = _peers(study, ME, lines)
    assert (peers.take(_frozen(study, trial)) is not None) is taken
    holder = peers.claims.holder(0, 0)
    assert holder is not None and holder.launcher == (ME if taken else PEER)
    assert lines == ([] if taken else [f"trial 0 is watched by the running launcher {PEER}; leaving it"])


@pytest.mark.parametrize(("age_s", "taken"), BOUNDARY)
def test_a_claim_whose_launcher_made_no_trial_yet_changes_hands_only_once_it_is_120_s_old(
    tmp_path: Path, clock: None, age_s: float, taken: bool
) -> None:
    study = _study(tmp_path)
    assert _claims(study, PEER).claim(0, 0, may_take=_never)
    _stamped(study, PEER, NOW - age_s)
    peers = _peers(study, ME, [])
    assert peers.claims.claim(0, 0, may_take=peers.gone) is taken


@pytest.mark.parametrize(("age_s", "taken"), BOUNDARY)
def test_a_trial_from_before_claims_changes_hands_only_once_its_stored_heartbeat_is_120_s_old(
    tmp_path: Path, clock: None, age_s: float, taken: bool
) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    for key, value in {"config": 0, "repeat": 0, "launcher": PEER, "heartbeat": NOW - age_s}.items():
        trial.set_user_attr(key, value)
    assert (_peers(study, ME, []).take(_frozen(study, trial)) is not None) is taken
