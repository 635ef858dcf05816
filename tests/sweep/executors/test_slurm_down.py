"""While slurmctld is down the launcher's SLURM calls do not block it: a pruned trial's scancel is kept
and sent once the controller answers, and the job-state cache asks `scontrol ping` (milliseconds) before
an squeue that would take 18 s to fail. Against the `fake_slurm` scripts plus a fake `scontrol ping`."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sweep.executors.slurm import SlurmExecutor
from sweep.executors.slurm_queries import Canceller, SlurmUnavailable, StateCache
from sweep.study import Resources
from tests.sweep.conftest import wait_for

DOWN = "scancel: error: Kill job error on job id 7: Unable to contact slurm controller (connect failure)"


@pytest.fixture
def ping(fake_slurm: Path) -> Path:
    """bin/ping.out is what `scontrol ping` says (DOWN to begin with)."""
    (fake_slurm / "scontrol").write_text(
        f'#!/bin/sh\necho "$@" >> {fake_slurm}/scontrol.calls\ncat {fake_slurm}/ping.out\n'
    )
    (fake_slurm / "scontrol").chmod(0o755)
    (fake_slurm / "ping.out").write_text("Slurmctld(primary) at vm is DOWN\n")
    return fake_slurm / "ping.out"


def _calls(bin_dir: Path, name: str) -> list[str]:
    path = bin_dir / f"{name}.calls"
    return path.read_text().splitlines() if path.exists() else []


def test_a_prune_during_an_outage_does_not_block_and_is_carried_out_when_the_controller_is_back(
    fake_slurm: Path, ping: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sweep.executors.slurm_queries.CANCEL_RETRY_S", 0.1)
    lines: list[str] = []
    executor = SlurmExecutor(Resources(gpus=0), out=lines.append)
    job = executor.attach("7", tmp_path)
    started = time.monotonic()
    job.stop_soon()
    assert time.monotonic() - started < 2  # no scancel waited out (9 s on the dev cluster)
    assert _calls(fake_slurm, "scancel") == [] and executor.canceller.pending == ["7"]
    assert lines == ["slurm: the controller does not answer; job 7 is cancelled once it does"]
    # the launch ends now: it says why it stays, and waits for the scancel
    finishing = threading.Thread(target=executor.finish)
    finishing.start()
    wait_for(lambda: len(lines) == 2, timeout=10, what="the line of the wait")
    assert lines[1] == (
        "slurm: waiting for the controller to cancel job 7 before exiting (up to 60 min); "
        "Ctrl-C leaves it to `scancel`"
    )
    time.sleep(0.5)
    assert _calls(fake_slurm, "scancel") == [] and finishing.is_alive()  # still down: asked with ping only
    ping.write_text("Slurmctld(primary) at vm is UP\n")
    wait_for(lambda: _calls(fake_slurm, "scancel") == ["7"], timeout=10, what="the scancel")
    finishing.join(timeout=10)
    assert not finishing.is_alive()  # the launch goes once the job is cancelled
    assert lines[2:] == ["slurm: the controller answers again; job 7 cancelled"]
    assert executor.canceller.pending == []
    executor.finish()  # nothing left: no line, no wait
    assert len(lines) == 3


def test_a_scancel_the_controller_did_not_answer_is_sent_again(
    fake_slurm: Path, ping: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sweep.executors.slurm_queries.CANCEL_RETRY_S", 0.1)
    ping.write_text("Slurmctld(primary) at vm is UP\n")  # answers the ping, then not the scancel
    (fake_slurm / "scancel.err").write_text(DOWN)
    (fake_slurm / "scancel.rc").write_text("8")
    lines: list[str] = []
    canceller = Canceller(3600, lines.append)
    canceller.cancel("7")
    assert canceller.pending == ["7"]
    (fake_slurm / "scancel.err").unlink()
    (fake_slurm / "scancel.rc").unlink()
    wait_for(lambda: not canceller.pending, timeout=10, what="the scancel sent again")
    assert len(_calls(fake_slurm, "scancel")) == 2


def test_the_state_cache_asks_ping_before_each_squeue_and_no_squeue_while_it_says_down(
    fake_slurm: Path, ping: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault: the first squeue of an outage took 18 s to fail, and the launcher's loop (recording ends,
    pruning) waited for it: a trial that ended then was recorded late, one to prune trained on."""
    cache = StateCache(query_every_s=30)
    for _ in range(3):
        started = time.monotonic()
        with pytest.raises(SlurmUnavailable, match="scontrol ping says the controller is down"):
            cache.get("7", fresh=True)
        assert time.monotonic() - started < 2
    assert _calls(fake_slurm, "squeue") == []  # ping's milliseconds only
    ping.write_text("Slurmctld(primary) at vm is DOWN\nSlurmctld(backup) at vm2 is UP\n")
    (fake_slurm / "squeue.out").write_text("7|RUNNING|None|0\n")
    assert cache.get("7", fresh=True).state == "RUNNING"  # a backup controller answers
    ping.write_text("Slurmctld(primary) at vm is UP\n")
    cache.get("7", fresh=True)
    assert len(_calls(fake_slurm, "squeue")) == 2 and len(_calls(fake_slurm, "scontrol")) == 5
