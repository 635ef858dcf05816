"""What every executor shares: reading the result pickle submitit leaves for a job, damaged ones too."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from submitit.core.utils import cloudpickle_dump

from sweep.executors.base import pickled_outcome
from sweep.executors.files import SUBMITIT_DIR, log_paths
from sweep.launcher import launch
from sweep.store.storage import default_url
from sweep.study import load_study
from tests.conftest import deadline
from tests.sweep.conftest import instant_job, processes_mentioning, wait_for, write_study


def test_a_result_pickle_is_read_as_its_outcome(tmp_path: Path) -> None:
    cloudpickle_dump(("success", 3), log_paths(tmp_path, "7").result_pickle)
    cloudpickle_dump(("error", "Traceback: boom"), log_paths(tmp_path, "8").result_pickle)
    assert pickled_outcome(tmp_path, "7").status == "success"  # type: ignore[union-attr]
    assert pickled_outcome(tmp_path, "8").detail == "Traceback: boom"  # type: ignore[union-attr]
    assert pickled_outcome(tmp_path, "9") is None


@pytest.mark.parametrize("damage", [b"", b"\x80\x04\x95\x10", b"\x80\x02.", b"not a pickle"])
def test_a_damaged_result_pickle_is_a_lost_job_naming_the_file(tmp_path: Path, damage: bytes) -> None:
    """Fault: a truncated or corrupt submitit result pickle raised EOFError/UnpicklingError/IndexError."""
    path = log_paths(tmp_path, "7").result_pickle
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(damage)
    outcome = pickled_outcome(tmp_path, "7")
    assert outcome is not None and outcome.status == "lost"
    assert str(path) in outcome.detail and "unreadable" in outcome.detail


def test_a_relaunch_resumes_a_reattached_job_whose_result_pickle_is_truncated(tmp_path: Path) -> None:
    """Fault: a truncated result pickle of a re-attached job crashed `sweep launch`, on every relaunch."""
    spec = load_study(
        write_study(tmp_path / "pk.toml", study={"name": "pk", "sampler": "grid"}, space={"lr": [0.05]})
    )
    results = tmp_path / "results"

    def interrupt_once_submitted(line: str) -> None:
        # Ctrl-C right after the job started: the launcher stops, its local job runs on and finishes
        if line.startswith("trial 0 submitted"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        launch(spec, results_dir=results, executor="local", out=interrupt_once_submitted, job=instant_job)
    run_dir = results / "runs" / "pk" / "0"
    submitit = run_dir / SUBMITIT_DIR
    wait_for(lambda: any(submitit.glob("*_result.pkl")), timeout=deadline(60), what="the result pickle")
    wait_for(lambda: not processes_mentioning(str(run_dir)), timeout=deadline(30), what="the job to end")
    [pickle] = submitit.glob("*_result.pkl")
    pickle.write_bytes(pickle.read_bytes()[:10])  # as a full disk or a killed copy leaves it

    lines: list[str] = []
    launch(spec, results_dir=results, executor="local", out=lines.append, job=instant_job)
    assert any("is gone without a result; resuming it" in line for line in lines), lines
    [trial] = optuna.load_study(study_name="pk", storage=default_url(results)).trials
    assert trial.state == TrialState.COMPLETE
