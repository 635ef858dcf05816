"""`sweep status --trial N` shows the run's manifest.json: each attempt, the last one's code and software."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sweep.cli import main
from sweep.commands.status import manifest_lines
from tests.sweep.report_studies import Trial, epoch, make_study
from trainer.manifest import end_attempt, start_attempt


def test_status_of_one_trial_shows_its_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    make_study(
        results,
        "m",
        [
            Trial({"lr": 0.1}, epochs=[epoch(1, 1.0, 0.5, 1.0, 0.5)]),
            Trial({"lr": 0.2}, epochs=[epoch(1, 1.0, 0.5, 1.0, 0.4)]),
        ],
    )
    run_dir = results / "runs" / "m" / "0"
    code = tmp_path / "code"
    code.mkdir()
    subprocess.run(["git", "-C", str(code), "init", "-q"], check=True)
    (code / "train.py").write_text("print(1)\n")
    subprocess.run(["git", "-C", str(code), "add", "train.py"], check=True)
    git_id = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "-C", str(code), *git_id, "commit", "-q", "-m", "one"], check=True)
    (code / "train.py").write_text("print(2)\n")
    first = start_attempt(run_dir, program_dir=code, torch_details=False)
    end_attempt(run_dir, first)
    monkeypatch.setenv("SLURM_JOB_ID", "81")
    monkeypatch.setenv("SLURM_JOB_PARTITION", "gpu")
    monkeypatch.setenv("SLURMD_NODENAME", "node2")
    second = start_attempt(run_dir, program_dir=code, torch_details=False)

    assert main(["status", "--study", "m", "--trial", "0", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "  manifest: 2 attempts" in out
    assert f"    #1 {first.started} to " in out and f"on {first.hostname}\n" in out
    assert f"    #2 {second.started} to -  on {second.hostname}  slurm job 81 on gpu (node2)" in out
    commit = subprocess.run(
        ["git", "-C", str(code), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout
    assert (
        f"code {code.resolve()}: commit {commit.strip()}, dirty (diff sha256 {second.git_diff_sha256})" in out
    )
    assert f"Python {second.python} " in out and f"packages sha256 {second.packages_sha256}" in out
    assert f"    GPUs {second.gpu_text}" in out

    assert main(["status", "--study", "m", "--trial", "1", "--results-dir", str(results)]) == 0
    assert "manifest: none" in capsys.readouterr().out


def test_status_says_a_repository_without_a_commit_is_one_not_that_it_is_no_checkout(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    subprocess.run(["git", "-C", str(fresh), "init", "-q"], check=True)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    attempt = start_attempt(run_dir, program_dir=fresh, torch_details=False)
    assert f"    code {fresh.resolve()}: a git repository with no commit yet" in manifest_lines([attempt])
    plain = tmp_path / "plain"
    plain.mkdir()
    other = start_attempt(plain, program_dir=plain, torch_details=False)
    assert f"    code {plain.resolve()}: not a git checkout" in manifest_lines([other])
