"""What squeue says of RUNNING trials' jobs: asked once for all, at most once per `SlurmStates.every_s`,
a scheduler that does not answer said once for the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.views.job_states import SLURM_DOWN, SlurmStates, scheduler_lines, with_job_states
from sweep.views.trial_row import TrialRow
from tests.sweep import fake_slurm

DOWN = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"


def _rows(*job_ids: str) -> list[TrialRow]:
    return [
        TrialRow(number=i, state="RUNNING", params={}, epochs_done=0, epochs=3, best=None, job_id=job_id,
                 executor="slurm")
        for i, job_id in enumerate(job_ids)
    ]  # fmt: skip


def test_squeue_is_asked_once_per_interval_and_a_job_started_since_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_slurm.install(tmp_path / "bin", monkeypatch, gone_after_s=0)
    asked = SlurmStates(every_s=3600)
    first = with_job_states(_rows("11", "12"), asked)
    assert [row.job_state for row in first] == ["slurm RUNNING", "slurm RUNNING"]
    later = with_job_states(_rows("11", "12", "13"), asked)  # a new trial's job, within the interval
    assert [row.job_state for row in later] == [
        "slurm RUNNING", "slurm RUNNING", "slurm: not asked yet (squeue every 3600 s)"
    ]  # fmt: skip
    assert len(fake_slurm.call_times(bin_dir, "squeue")) == 1
    with_job_states(_rows("11"))  # `sweep status`: asked every time
    assert len(fake_slurm.call_times(bin_dir, "squeue")) == 2


def test_a_scheduler_that_does_not_answer_is_one_line_for_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_slurm.install(tmp_path / "bin", monkeypatch, gone_after_s=0)
    (bin_dir / "squeue.err").write_text(f"{DOWN}\n")
    rows = with_job_states(_rows("11", "12", "13"))
    assert [row.job_state for row in rows] == [SLURM_DOWN] * 3
    assert scheduler_lines(rows) == [
        f"  slurm does not answer (squeue failed: {DOWN}): the running trials' job states are unknown"
    ]
    assert scheduler_lines(with_job_states(_rows())) == []
