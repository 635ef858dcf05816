"""`sweep status` of a large study: the counts, the running, failed and orphaned trials and the best ten;
`--all` a line for every trial."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.commands.status_summary import BEST_SHOWN, FAILED_SHOWN, SUMMARY_FROM
from sweep.store import records
from sweep.store.storage import default_url
from tests.sweep.conftest import sweep_main


def _study(results: Path, n: int) -> optuna.Study:
    """`big`: n trials, values i/n (the best last), every seventh failed, trial 3 left running with a
    local job that is long gone (an orphaned trial)."""
    results.mkdir(parents=True)
    study = optuna.create_study(study_name="big", storage=default_url(results), direction="maximize")
    for i in range(n):
        state = TrialState.FAIL if i % 7 == 6 else TrialState.COMPLETE
        trial = optuna.trial.create_trial(
            state=state,
            value=i / n if state == TrialState.COMPLETE else None,
            params={"lr": i / n},
            distributions={"lr": optuna.distributions.FloatDistribution(0.0, 1.0)},
        )
        study.add_trial(trial)
    running = study.ask()
    records.write(running, executor="local", job_id="999999999", run_dir=results / "runs" / "big" / "x")
    return study


@pytest.fixture
def big(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    _study(results, 120)
    return results


def test_a_large_study_shows_its_counts_running_last_failed_and_best_ten(
    big: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = sweep_main(capsys, "status", "--study", "big", "--results-dir", str(big))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["study big (value)", "  121 trials: 103 complete, 17 fail, 1 running"]
    numbers = [int(m.group(1)) for m in (re.match(r"  #(\d+)", line) for line in lines) if m]
    failed = [i for i in range(120) if i % 7 == 6][-FAILED_SHOWN:]
    best = [i for i in reversed(range(120)) if i % 7 != 6][:BEST_SHOWN]
    assert numbers == [120, *failed, *best]
    (orphaned,) = [line for line in lines if line.startswith("  running (")]
    assert orphaned == "  running (1, 1 orphaned: job ended, `sweep launch` resumes or fails them):"
    assert "  failed (the last 10 of 17):" in lines and "  best 10 of 103 complete:" in lines
    assert "  (`sweep status --study big --all` lists all 121 trials)" in lines


def test_all_shows_every_trial_and_a_small_study_shows_every_trial_anyway(
    big: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    every = sweep_main(capsys, "status", "--study", "big", "--all", "--results-dir", str(big))
    assert sum(line.startswith("  #") for line in every.stdout.splitlines()) == 121
    small = tmp_path / "small"
    _study(small, SUMMARY_FROM - 1)
    shown = sweep_main(capsys, "status", "--study", "big", "--results-dir", str(small))
    assert sum(line.startswith("  #") for line in shown.stdout.splitlines()) == SUMMARY_FROM
