"""`sweep report`'s pruning line: the pruned trials' hours, and what they would have used to their end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweep.cli import main
from tests.sweep.conftest import TINY_TRAIN, write_study
from tests.sweep.report_studies import Trial, epoch, make_study

PRUNED = TrialState.PRUNED


def _epochs(count: int, seconds: float) -> list[dict[str, float]]:
    return [epoch(n, 1.0, 0.5, 1.0, 0.1 * n, seconds=seconds) for n in range(1, count + 1)]


@pytest.fixture
def pruned_study(tmp_path: Path) -> Path:
    """Study `pr`, 10 epochs a trial, 1 GPU: one complete trial, two pruned ones (2 x 100 s, 5 x 60 s)."""
    study_file = write_study(
        tmp_path / "pr.toml",
        study={"name": "pr", "sampler": "grid", "pruner": "median"},
        train={**TINY_TRAIN, "epochs": 10},
        space={"lr": [0.1, 0.2, 0.3]},
        resources={"gpus": 1, "cpus": 1},
    )
    make_study(
        tmp_path / "results",
        "pr",
        [
            Trial({"lr": 0.1}, epochs=_epochs(10, 30.0)),
            Trial({"lr": 0.2}, PRUNED, epochs=_epochs(2, 100.0)),
            Trial({"lr": 0.3}, PRUNED, epochs=_epochs(5, 60.0)),
        ],
    )
    return study_file


# By hand: used 2 x 100 + 5 x 60 = 500 s; to the end 100 x 10 + 60 x 10 = 1,600 s; saved 1,100 s. The whole
# study (the complete trial's 10 x 30 s too) used 800 s of the 1,900 s its trials would have used: 42.1%.
USED_H, FULL_H = 500 / 3600, 1600 / 3600


def test_the_savings_line_is_the_sum_by_hand(
    pruned_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    assert main(["report", "--study", str(pruned_study), "--results-dir", str(results)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == (
        f"Pruning (median) saved {FULL_H - USED_H:.3f} GPU-hours, 69% of them: 2 pruned trials used "
        f"{USED_H:.3f} GPU-hours in 7 epochs; run to their 20 epochs they would have used {FULL_H:.3f} (each "
        "one's remaining epochs at its own time per epoch). The study used 42.1% of the time of all its "
        "trials run to the end."
    )
    assert (
        main(["report", "--study", str(pruned_study), "--results-dir", str(results), "--format", "json"]) == 0
    )
    (study,) = json.loads(capsys.readouterr().out)
    pruning = study["pruning"]
    assert pruning["pruned"] == 2 and pruning["unit"] == "GPU-hours"
    assert (pruning["epochs_run"], pruning["epochs_planned"]) == (7, 20)
    assert pruning["used"] == pytest.approx(USED_H)
    assert pruning["full"] == pytest.approx(FULL_H)
    assert pruning["saved"] == pytest.approx(FULL_H - USED_H)
    assert pruning["method"] == "median"
    assert pruning["grid_share"] == pytest.approx(800 / 1900)


def test_a_study_without_pruned_trials_has_no_savings_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_file = write_study(
        tmp_path / "np.toml", study={"name": "np", "sampler": "grid"}, space={"lr": [0.1]}
    )
    make_study(tmp_path / "results", "np", [Trial({"lr": 0.1}, epochs=_epochs(2, 10.0))])
    assert main(["report", "--study", str(study_file), "--results-dir", str(tmp_path / "results")]) == 0
    assert "Pruning" not in capsys.readouterr().out
    assert (
        main(
            [
                "report",
                "--study",
                str(study_file),
                "--results-dir",
                str(tmp_path / "results"),
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)[0]["pruning"] is None
