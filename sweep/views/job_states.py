"""What the scheduler (squeue) or the process table says of RUNNING trials' jobs, for `sweep status`:
read only; an ended job is shown as such, and the next `sweep launch` resumes or fails its trial.

squeue is asked once for all the jobs, and a long `sweep status --watch` asks it at most once per
[waits] slurm_query_s (`SlurmStates`), as a launcher does. A scheduler that does not answer is said once
for the table (`scheduler_lines`), its trials' rows then only `slurm: unknown (...)`.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import replace
from pathlib import Path

from sweep.executors import local, slurm
from sweep.executors.files import JobFiles
from sweep.polling import Throttle
from sweep.store.owners import Owner
from sweep.views.trial_row import TrialRow

SLURM_DOWN = "slurm: unknown (scheduler not answering)"  # a row's job state when squeue failed


class SlurmStates:
    """What squeue (and sacct, for jobs it no longer lists) says of RUNNING trials' jobs, asked for all
    of them in one query at most once per `every_s` seconds: `sweep status` asks once, a long `sweep
    status --watch` keeps to a launcher's budget ([waits] slurm_query_s) and shows the last answer
    between queries."""

    def __init__(self, every_s: float = 0.0) -> None:
        self.every_s = every_s
        self.due = Throttle(every_s)
        self.found: dict[str, slurm.JobState] = {}
        self.error: str | None = None  # why the last query failed (squeue's own words)

    def read(self, job_ids: list[str]) -> None:
        """Ask SLURM about `job_ids` when a query is due."""
        if self.due.take():
            try:
                self.found, self.error = slurm.job_states(job_ids), None
            except slurm.SlurmUnavailable as err:
                self.found, self.error = {}, str(err)


def with_job_states(rows: list[TrialRow], slurm_states: SlurmStates | None = None) -> list[TrialRow]:
    """The rows, RUNNING trials' with what SLURM (through `slurm_states`, else asked now) or the process
    table says of their job."""
    return with_local_states(with_slurm_states(rows, slurm_states))


def with_slurm_states(rows: list[TrialRow], slurm_states: SlurmStates | None = None) -> list[TrialRow]:
    """`sweep status` rows, the RUNNING SLURM trials' with their job's state (one squeue call, when
    `slurm_states` has one due; a job it was not asked about yet says so).

    Read only: an ended job is shown as such, and the next `sweep launch` resumes or fails its trial.
    """
    ids = [row.job_id for row in rows if row.state == "RUNNING" and row.executor == "slurm" and row.job_id]
    if not ids or shutil.which("squeue") is None:
        return rows
    asked = slurm_states or SlurmStates()
    asked.read(ids)

    def with_state(row: TrialRow) -> TrialRow:
        if row.job_id not in ids:
            return row
        if asked.error is not None:  # said once for the table: `scheduler_lines`
            return replace(row, job_state=SLURM_DOWN, scheduler_error=asked.error)
        found = asked.found.get(row.job_id or "")
        if found is None:  # a job that started since the last query
            return replace(row, job_state=f"slurm: not asked yet (squeue every {asked.every_s:g} s)")
        return replace(row, job_state=_slurm_text(found), orphaned=not found.live)

    return [with_state(row) for row in rows]


def scheduler_lines(rows: list[TrialRow]) -> list[str]:
    """One line for the table per way the scheduler failed to answer about the rows' jobs ([] when it
    answered): its words once, not on every running trial's line."""
    errors = dict.fromkeys(row.scheduler_error for row in rows if row.scheduler_error)
    return [
        f"  slurm does not answer ({error}): the running trials' job states are unknown" for error in errors
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
