"""What the other commands read of a detached launcher: stopping one that runs as a SLURM job asks
squeue at most once a second while it waits for the job to go."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.detached import stop
from sweep.store.records import DetachedLauncher
from tests.sweep import fake_slurm


def test_stopping_a_detached_slurm_launcher_asks_squeue_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_slurm.install(tmp_path / "bin", monkeypatch, gone_after_s=2.0)
    record = DetachedLauncher(kind="slurm", log=str(tmp_path), since=0.0, job_id="77")
    lines: list[str] = []
    stop(record, lines.append)
    assert lines == ["detached launcher (SLURM job 77) stopped"]
    (scancel,) = fake_slurm.call_times(bin_dir, "scancel")
    squeue = fake_slurm.call_times(bin_dir, "squeue")
    assert 3 <= len(squeue) <= 5 and fake_slurm.most_in_one_second(squeue) <= 2  # one before the scancel
    after = [t for t in squeue if t > scancel]
    assert fake_slurm.most_in_one_second(after) == 1 and after[-1] - scancel < 2.0 + 1.5
