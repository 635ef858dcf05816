"""sweep._compat: what sweep relies on of Optuna's and submitit's internals, pinned, so that an upgrade
that moves it fails here, by name, rather than somewhere in a launch."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import pytest
import submitit
from optuna.trial import TrialState

from benchmarks.noop_job import noop
from sweep._compat import SharedDistributions, finished_already, local_process, own_session
from sweep.executors.debug import DebugExecutor
from sweep.launcher.intervals import Intervals
from sweep.launcher.loop import Launcher
from sweep.study import load_study
from tests.conftest import deadline
from tests.sweep.conftest import new_study, wait_for


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


def test_a_local_job_started_with_sigint_ignored_is_still_cancelled(tmp_path: Path) -> None:
    """Fault: submitit cancels a local job with SIGINT to its controller, which inherited SIG_IGN from a
    launcher started in the background of a script: a pruned trial's job trained on."""
    executor = submitit.LocalExecutor(folder=tmp_path)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `sweep launch ... &` in a script has it
    try:
        with own_session():
            job = executor.submit(time.sleep, 60)
    finally:
        signal.signal(signal.SIGINT, previous)
    process = local_process(job)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    wait_for(lambda: children.read_text().strip() != "", timeout=deadline(30), what="the job's task to start")
    job.cancel()
    assert process.wait(timeout=deadline(30)) is not None  # ended, well before its 60 s


def test_telling_a_finished_trial_again_is_the_error_finished_already_knows() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(ValueError) as refused:
        study.tell(trial.number, state=TrialState.FAIL)
    assert finished_already(refused.value)
    assert not finished_already(ValueError("some other refusal"))


def test_cached_finished_trials_share_one_copy_of_each_distribution(tmp_path: Path) -> None:
    """A one-parameter grid of N values cost O(N) a trial in Optuna's cache (each trial its own decoded
    copy of the N choices); shared, the cache holds one copy, and every trial reads the same values."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    values = [0.001 * (i + 1) for i in range(300)]
    study = optuna.create_study(study_name="line", storage=url)
    grid = optuna.distributions.CategoricalDistribution(values)
    for value in values[:40]:
        study.add_trial(
            optuna.trial.create_trial(params={"lr": value}, distributions={"lr": grid}, value=value)
        )
    study = optuna.load_study(study_name="line", storage=url)  # a fresh cache, read from the database
    trials = study.get_trials(deepcopy=False)
    assert len({id(t.distributions["lr"]) for t in trials}) == 40  # a copy each
    shared = SharedDistributions()
    shared.share(study)
    trials = study.get_trials(deepcopy=False)
    assert len({id(t.distributions["lr"]) for t in trials}) == 1
    assert all(t.distributions["lr"] == grid and t.params["lr"] in values for t in trials)
    assert shared.seen == set(range(40))


def test_the_launcher_shares_its_studys_cached_distributions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_file = tmp_path / "line.toml"
    lrs = ", ".join(str(round(0.001 * (i + 1), 6)) for i in range(30))
    study_file.write_text(
        '[study]\nname = "line"\nsampler = "grid"\n[train]\ndataset = "fake"\ndevice = "cpu"\n'
        f"[space]\nlr = [{lrs}]\n[resources]\ngpus = 0\n"
    )
    spec = load_study(study_file)
    results = tmp_path / "results"
    results.mkdir()
    study = new_study(spec, results)
    scan_every_poll = Intervals(scan_s=0.0)
    Launcher(
        spec,
        study,
        DebugExecutor(),
        results_dir=results,
        job=noop,
        out=lambda _: None,
        intervals=scan_every_poll,
    ).run()
    trials = study.get_trials(deepcopy=False)  # the launcher's own study: its cache
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 30
    # shared at each scan: all but the last trial, told after the last scan
    assert len({id(t.distributions["lr"]) for t in trials[:-1]}) == 1
