"""manifest.json: each start of a run records its code (git), software, hardware and times."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from pathlib import Path

import pytest
import torch

from sweep.commands.status import manifest_lines
from tests.conftest import tiny_config
from trainer import run
from trainer.manifest import end_attempt, installed_packages, manifest_path, read_manifest, start_attempt
from trainer.train import TRAINER_DIR


def _git(repo: Path, *args: str) -> bytes:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args]
    return subprocess.run(command, check=True, capture_output=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git checkout with one commit: train.py and a .gitignore that hides runs/."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    (repo / ".gitignore").write_text("runs/\n")
    _git(repo, "add", "train.py", ".gitignore")
    _git(repo, "commit", "-q", "-m", "v1")
    return repo


def test_a_dirty_checkout_records_its_commit_the_dirty_flag_and_the_diffs_hash(
    repo: Path, tmp_path: Path
) -> None:
    (repo / "train.py").write_text("print('v2, not committed')\n")
    (repo / "notes.txt").write_text("untracked\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    attempt = start_attempt(run_dir, program_dir=repo, torch_details=False)

    (saved,) = read_manifest(run_dir)
    assert saved == attempt
    assert attempt.git_commit == _git(repo, "rev-parse", "HEAD").decode().strip()
    assert attempt.git_dirty is True and attempt.git_untracked == 1
    diff = _git(repo, "diff", "HEAD", "--binary")
    assert b"v2, not committed" in diff
    assert attempt.git_diff_sha256 == hashlib.sha256(diff).hexdigest()
    assert attempt.code == f"{attempt.git_commit[:12]} + diff {attempt.git_diff_sha256[:8]}"
    assert attempt.program_dir == str(repo.resolve())
    assert attempt.python == platform.python_version()
    assert attempt.packages_sha256 == hashlib.sha256("\n".join(installed_packages()).encode()).hexdigest()
    assert f"torch=={torch.__version__}" in installed_packages()
    assert attempt.ended is None and attempt.number == 1


def test_a_clean_checkout_is_not_dirty_and_has_no_diff_hash(repo: Path, tmp_path: Path) -> None:
    attempt = start_attempt(tmp_path, program_dir=repo, torch_details=False)
    assert (attempt.git_dirty, attempt.git_diff_sha256, attempt.git_untracked) == (False, None, 0)


def test_outside_a_repository_there_is_no_commit_and_no_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    attempt = start_attempt(tmp_path, program_dir=plain, torch_details=False)
    assert (attempt.git_commit, attempt.git_dirty, attempt.git_diff_sha256) == (None, None, None)
    assert attempt.code == "not in git"
    assert json.loads(manifest_path(tmp_path).read_text())["attempts"][0]["git_commit"] is None


def test_a_repository_without_a_commit_yet_says_so_not_not_a_checkout(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    _git(fresh, "init", "-q")
    (fresh / "train.py").write_text("print('v0')\n")
    attempt = start_attempt(tmp_path, program_dir=fresh, torch_details=False)
    assert attempt.git_commit is None and attempt.git_no_commit is True
    assert attempt.code == "git, no commit yet"
    plain = tmp_path / "plain"
    plain.mkdir()
    assert not start_attempt(plain, program_dir=plain, torch_details=False).git_no_commit


def test_a_folder_its_repository_ignores_is_not_that_repositorys_code(repo: Path, tmp_path: Path) -> None:
    installed = repo / "runs" / "site-packages"
    installed.mkdir(parents=True)
    assert start_attempt(tmp_path, program_dir=installed, torch_details=False).git_commit is None


def test_each_start_appends_an_attempt_and_its_end_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = start_attempt(tmp_path, program_dir=tmp_path, torch_details=False)
    end_attempt(tmp_path, first)
    monkeypatch.setenv("SLURM_JOB_ID", "47")
    monkeypatch.setenv("SLURM_JOB_PARTITION", "gpu")
    monkeypatch.setenv("SLURMD_NODENAME", "node3")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    second = start_attempt(tmp_path, program_dir=tmp_path, torch_details=False)

    done, running = read_manifest(tmp_path)
    assert (done.number, running.number) == (1, 2)
    assert done.ended is not None and done.ended >= done.started and running.ended is None
    assert (done.slurm_job_id, done.slurm_partition, done.slurm_node) == (None, None, None)
    assert running == second
    assert (second.slurm_job_id, second.slurm_partition, second.slurm_node) == ("47", "gpu", "node3")
    assert second.slurm_restart_count == 1
    assert (done.ranks, done.job_nodes) == (None, None)  # one process, outside SLURM


def test_a_data_parallel_attempt_records_its_ranks_and_the_jobs_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("SLURM_JOB_ID", "48")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[3-4]")
    attempt = start_attempt(tmp_path, program_dir=tmp_path, torch_details=False)
    assert (attempt.ranks, attempt.job_nodes) == (4, "node[3-4]")
    (read,) = read_manifest(tmp_path)
    assert (read.ranks, read.job_nodes) == (4, "node[3-4]")
    lines = manifest_lines([read])
    assert "  slurm job 48  4 ranks on node[3-4]" in lines[1], lines
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert start_attempt(tmp_path, program_dir=tmp_path, torch_details=False).ranks is None


def test_a_training_run_writes_its_manifest_with_torch_and_times(tmp_path: Path) -> None:
    run(tiny_config(), tmp_path, progress=False)
    (attempt,) = read_manifest(tmp_path)
    assert attempt.program_dir == str(TRAINER_DIR)
    assert attempt.torch == torch.__version__
    assert attempt.ended is not None and attempt.ended >= attempt.started
    if not torch.cuda.is_available():  # None on a CPU, as documented
        assert (attempt.cuda, attempt.cudnn) == (None, None)
    run(tiny_config(), tmp_path, progress=False)  # complete: nothing trained, no attempt
    assert len(read_manifest(tmp_path)) == 1
