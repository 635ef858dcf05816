"""Helpers for tests of real local jobs, which run in sessions of their own and outlive a test that fails."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sweep.conftest import processes_mentioning


def kill_mentioning(text: str) -> None:
    """SIGKILL every live process whose command line contains `text` (a test's tmp_path)."""
    for pid in processes_mentioning(text):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def no_leftovers(tmp_path: Path) -> Iterator[Path]:
    """`tmp_path`; every process still running for it is killed after the test, passed or failed."""
    yield tmp_path
    kill_mentioning(str(tmp_path))


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """squeue/sacct/scancel/sbatch/srun/sinfo/scontrol on PATH that print bin/<name>.out (and exit with
    bin/<name>.rc); `scontrol ping` says UP, so a test never depends on this machine's own cluster (down
    while another test restarts it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol.out").write_text("Slurmctld(primary) at fake is UP\n")
    for name in ("squeue", "sacct", "scancel", "sbatch", "srun", "sinfo", "scontrol"):
        script = bin_dir / name
        script.write_text(
            f'#!/bin/sh\necho "$@" >> {bin_dir}/{name}.calls\n'
            f"cat {bin_dir}/{name}.out 2>/dev/null; cat {bin_dir}/{name}.err >&2 2>/dev/null\n"
            f"exit $(cat {bin_dir}/{name}.rc 2>/dev/null || echo 0)\n"
        )
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir
