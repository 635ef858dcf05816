"""sweep._compat: what sweep relies on of Optuna's and submitit's internals, pinned, so that an upgrade
that moves it fails here, by name, rather than somewhere in a launch."""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna
import pytest
import submitit
from optuna.trial import TrialState

from sweep._compat import finished_already, local_process, own_session
from tests.conftest import deadline


def test_a_local_controller_submitted_in_own_session_leads_a_session_of_its_own(tmp_path: Path) -> None:
    """submitit's start_controller looks subprocess.Popen up when called: own_session swaps it."""
    executor = submitit.LocalExecutor(folder=tmp_path / "in")
    with own_session():
        inside = executor.submit(time.sleep, 60)
    outside = submitit.LocalExecutor(folder=tmp_path / "out").submit(time.sleep, 60)
    try:
        pid_in, pid_out = local_process(inside).pid, local_process(outside).pid
        assert os.getsid(pid_in) == pid_in, "the controller started in own_session is not a session leader"
        assert os.getsid(pid_out) == os.getsid(0), "outside own_session, a controller joins our session"
    finally:
        for job in (inside, outside):
            job.cancel()
            local_process(job).wait(timeout=deadline(30))


def test_telling_a_finished_trial_again_is_the_error_finished_already_knows() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(ValueError) as refused:
        study.tell(trial.number, state=TrialState.FAIL)
    assert finished_already(refused.value)
    assert not finished_already(ValueError("some other refusal"))
