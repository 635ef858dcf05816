"""The report's Environment line: there when the complete trials' manifests differ, not when they agree."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweep.cli import main
from tests.sweep.report_studies import Trial, epoch, make_study
from trainer.manifest import manifest_path, read_manifest, start_attempt

GIT = ["-c", "user.name=t", "-c", "user.email=t@example.org"]


def _commit(repo: Path, text: str) -> str:
    (repo / "train.py").write_text(text)
    subprocess.run(["git", "-C", str(repo), "add", "train.py"], check=True)
    subprocess.run(["git", "-C", str(repo), *GIT, "commit", "-q", "-m", text], check=True)
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def two_trials(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Study `env`: two complete trials and a pruned one, each with a run dir; a git repo for their code."""
    results = tmp_path / "results"
    make_study(
        results,
        "env",
        [
            Trial({"lr": 0.1}, epochs=[epoch(1, 1.0, 0.5, 1.0, 0.6)]),
            Trial({"lr": 0.2}, epochs=[epoch(1, 1.0, 0.5, 1.0, 0.5)]),
            Trial({"lr": 0.4}, TrialState.PRUNED, epochs=[epoch(1, 2.0, 0.1, 2.0, 0.1)]),
        ],
    )
    repo = tmp_path / "code"
    repo.mkdir()
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    return results, repo, results / "runs" / "env"


def _report(results: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["report", "--study", "env", "--results-dir", str(results)]) == 0
    return capsys.readouterr().out


def test_trials_on_the_same_code_and_machine_get_no_environment_line(
    two_trials: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    results, repo, runs = two_trials
    _commit(repo, "v1")
    for trial in ("0", "1"):
        start_attempt(runs / trial, program_dir=repo, torch_details=False)
    _commit(repo, "v2")
    start_attempt(runs / "2", program_dir=repo, torch_details=False)  # pruned: not in the table
    assert "Environment" not in _report(results, capsys)
    assert "Environment" not in (results / "env.html").read_text()


def test_trials_on_two_commits_get_an_environment_line_naming_both(
    two_trials: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    results, repo, runs = two_trials
    first = _commit(repo, "v1")
    start_attempt(runs / "0", program_dir=repo, torch_details=False)
    second = _commit(repo, "v2")
    start_attempt(runs / "1", program_dir=repo, torch_details=False)

    out = _report(results, capsys)
    line = next(line for line in out.splitlines() if line.startswith("**Environment**"))
    assert f"code ({first[:12]}: trial 0; {second[:12]}: trial 1)" in line
    assert "GPU models" not in line and "package sets" not in line  # those agree
    assert "Environment: the trials ran with different code" in (results / "env.html").read_text()


def test_a_trial_requeued_onto_another_gpu_model_shows_under_both(
    two_trials: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    results, repo, runs = two_trials
    _commit(repo, "v1")
    for trial in ("0", "1"):
        start_attempt(runs / trial, program_dir=repo, torch_details=False)
    start_attempt(runs / "1", program_dir=repo, torch_details=False)  # trial 1 ran twice
    # As a manifest written on GPU nodes reads: trial 1's second attempt on another model.
    for trial, models in (
        ("0", [("NVIDIA A100",)]),
        ("1", [("NVIDIA A100",), ("NVIDIA H100", "NVIDIA H100")]),
    ):
        attempts = [
            dataclasses.replace(a, gpus=m) for a, m in zip(read_manifest(runs / trial), models, strict=True)
        ]
        data = {"format": 1, "attempts": [a.to_dict() for a in attempts]}
        manifest_path(runs / trial).write_text(json.dumps(data))

    out = _report(results, capsys)
    assert "different GPU models (NVIDIA A100: trials 0, 1; 2 × NVIDIA H100: trial 1)" in out
    assert main(["report", "--study", "env", "--results-dir", str(results), "--format", "json"]) == 0
    (study,) = json.loads(capsys.readouterr().out)
    assert study["environment"] == [
        {
            "aspect": "GPU models",
            "groups": [
                {"value": "NVIDIA A100", "trials": [0, 1]},
                {"value": "2 × NVIDIA H100", "trials": [1]},
            ],
        }
    ]
