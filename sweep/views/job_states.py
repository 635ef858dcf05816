"""What the scheduler (squeue) or the process table says of RUNNING trials' jobs, for `sweep status`:
read only; an ended job is shown as such, and the next `sweep launch` resumes or fails its trial."""

from __future__ import annotations

import shutil
import socket
from dataclasses import replace
from pathlib import Path

from sweep.executors import local, slurm
from sweep.executors.files import JobFiles
from sweep.store.owners import Owner
from sweep.views.trial_row import TrialRow


def with_job_states(rows: list[TrialRow]) -> list[TrialRow]:
    """The rows, RUNNING trials' with what SLURM or the process table says of their job."""
    return with_local_states(with_slurm_states(rows))


def with_slurm_states(rows: list[TrialRow]) -> list[TrialRow]:
    """`sweep status` rows, the RUNNING SLURM trials' with their job's state (one squeue call).

    Read only: an ended job is shown as such, and the next `sweep launch` resumes or fails its trial.
    """
    ids = [row.job_id for row in rows if row.state == "RUNNING" and row.executor == "slurm" and row.job_id]
    if not ids or shutil.which("squeue") is None:
        return rows
    try:
        found = slurm.job_states(ids)
    except slurm.SlurmUnavailable as err:
        return [replace(row, job_state=f"slurm: {err}") if row.job_id in ids else row for row in rows]
    return [
        replace(row, job_state=_slurm_text(found[row.job_id]), orphaned=not found[row.job_id].live)
        if row.job_id in found
        else row
        for row in rows
    ]


def _slurm_text(state: slurm.JobState) -> str:
    if state.live:
        waits = f" ({state.reason})" if state.state == "PENDING" and state.reason not in ("", "None") else ""
        return f"slurm {state.state}{waits}"
    return f"slurm {state.state}: job ended; sweep launch resumes or fails the trial"


def with_local_states(rows: list[TrialRow]) -> list[TrialRow]:
    """`sweep status` rows, the RUNNING local trials' with whether their job's process still runs.

    A local job runs on its launcher's host; started on another host it is shown as such, unchecked.
    """
    here = socket.gethostname()
    states: dict[int, str] = {}
    ended: set[int] = set()
    for row in rows:
        if row.state != "RUNNING" or row.executor != "local" or not row.job_id or not row.run_dir:
            continue
        host = Owner.parse(row.launcher).host if row.launcher else ""
        if host and host != here:
            states[row.number] = f"local on {host}"
            continue
        folder = JobFiles(Path(row.run_dir).absolute()).folder
        if not (row.job_id.isdigit() and local.controls(int(row.job_id), folder)):
            states[row.number] = "local: ended; `sweep launch` resumes it"
            ended.add(row.number)
            continue
        gpus = local.job_gpus(int(row.job_id))
        states[row.number] = "local: running" + (f" on GPU {','.join(map(str, gpus))}" if gpus else "")
    return [
        replace(row, job_state=states[row.number], orphaned=row.number in ended)
        if row.number in states
        else row
        for row in rows
    ]
