"""What SLURM says of our jobs: squeue and sacct queries, their states, and scancel.

`squeue -t all` asks slurmctld itself: it knows every pending, running or requeued job at once, and
keeps an ended job (COMPLETED, FAILED, CANCELLED, ...) for MinJobAge (300 s by default). sacct is only
asked about jobs squeue no longer lists: slurmdbd learns of states a second or so late, and a job
that slurmctld has forgotten is no longer alive whatever sacct last recorded.

A `scontrol requeue` (or a preemption, or submitit's requeue at a time limit) puts the same job id
back to PENDING: such a job is live, never gone.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sweep.errors import SweepError

if TYPE_CHECKING:  # sweep.status imports optuna, which the commands that only parse need not load
    from sweep.status import TrialRow

COMMAND_TIMEOUT_S = 30.0  # one squeue/sacct/scancel call; slurmctld answers in milliseconds when healthy
GONE = "GONE"  # unknown to squeue and to sacct
# States in which SLURM may still run the job (again): the launcher keeps watching these.
LIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "SPECIAL_EXIT",
        "RESV_DEL_HOLD",
    }
)


class SlurmUnavailable(SweepError):
    """squeue or sacct could not be run or did not answer."""


@dataclass(frozen=True)
class JobState:
    """A job's state as SLURM reports it (`CANCELLED by 0` -> `CANCELLED`), and who said so."""

    job_id: str
    state: str  # PENDING, RUNNING, REQUEUED, COMPLETED, FAILED, CANCELLED, NODE_FAIL, OUT_OF_MEMORY, GONE...
    source: str  # squeue | sacct | none

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES and self.source == "squeue"


def require_slurm() -> None:
    """Raise a one-line SweepError when the SLURM client commands are not on PATH."""
    missing = [name for name in ("sbatch", "squeue", "sacct", "scancel") if shutil.which(name) is None]
    if missing:
        raise SweepError(
            f"executor 'slurm' needs the SLURM commands {', '.join(missing)} on PATH; "
            "use --executor local off the cluster (or scripts/slurm-dev-cluster.sh start for a test cluster)"
        )


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmUnavailable(f"{args[0]} failed: {err}") from None


def _parse(lines: str) -> dict[str, str]:
    """`ID|STATE` lines -> {id: first word of the state}; sacct's `.batch`/`.0` step lines are skipped."""
    states: dict[str, str] = {}
    for line in lines.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id and state and "." not in job_id:
            states[job_id] = state.split()[0].rstrip("+")
    return states


def squeue_states(job_ids: list[str]) -> dict[str, str]:
    """The jobs slurmctld knows, with their states (recently ended ones included)."""
    if not job_ids:
        return {}
    done = _run(["squeue", "-h", "-t", "all", "-o", "%i|%T", "-j", ",".join(job_ids)])
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # none of them is known any more
            return {}
        raise SlurmUnavailable(f"squeue failed: {done.stderr.strip() or done.returncode}")
    return _parse(done.stdout)


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    """The last recorded state of each job the accounting database knows."""
    if not job_ids:
        return {}
    done = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)])
    if done.returncode != 0:
        raise SlurmUnavailable(f"sacct failed: {done.stderr.strip() or done.returncode}")
    return _parse(done.stdout)


def job_states(job_ids: Iterable[str]) -> dict[str, JobState]:
    """Each job's state: squeue's when slurmctld knows it, else sacct's, else GONE.

    Raises:
        SlurmUnavailable: squeue or sacct did not answer.
    """
    ids = sorted({str(job_id) for job_id in job_ids})
    known = squeue_states(ids)
    states = {job_id: JobState(job_id, state, "squeue") for job_id, state in known.items()}
    rest = [job_id for job_id in ids if job_id not in known]
    recorded = sacct_states(rest)
    for job_id in rest:
        state = recorded.get(job_id)
        states[job_id] = JobState(job_id, state, "sacct") if state else JobState(job_id, GONE, "none")
    return states


def scancel(job_ids: Iterable[str]) -> None:
    """Ask SLURM to cancel the jobs (it answers at once; the jobs end KillWait seconds later at most)."""
    ids = [str(job_id) for job_id in job_ids]
    if ids:
        _run(["scancel", *ids])


class StateCache:
    """The states of the jobs one launcher watches, refreshed together (one squeue call) at most every
    `max_age_s` seconds, so polling many trials does not mean one squeue per trial per poll."""

    def __init__(self, max_age_s: float = 1.0) -> None:
        self.max_age_s = max_age_s
        self.watched: set[str] = set()
        self._states: dict[str, JobState] = {}
        self._at = -float("inf")

    def get(self, job_id: str, *, fresh: bool = False) -> JobState:
        """The job's state; `fresh` forces a query now."""
        self.watched.add(job_id)
        stale = time.monotonic() - self._at > self.max_age_s
        if fresh or stale or job_id not in self._states:
            self._states = job_states(self.watched)
            self._at = time.monotonic()
        return self._states[job_id]

    def forget(self, job_id: str) -> None:
        """Stop querying a job whose end the launcher has dealt with."""
        self.watched.discard(job_id)


def with_slurm_states(rows: list[TrialRow]) -> list[TrialRow]:
    """`sweep status` rows, the RUNNING SLURM trials' with their job's state (one squeue call).

    Read only: an ended job is shown as such, and the next `sweep launch` resumes or fails its trial.
    """
    ids = [row.job_id for row in rows if row.state == "RUNNING" and row.executor == "slurm" and row.job_id]
    if not ids or shutil.which("squeue") is None:
        return rows
    try:
        states = {job_id: _status_text(state) for job_id, state in job_states(ids).items()}
    except SlurmUnavailable as err:
        states = dict.fromkeys(ids, f"slurm: {err}")
    return [replace(row, job_state=states[row.job_id]) if row.job_id in states else row for row in rows]


def _status_text(state: JobState) -> str:
    if state.live:
        return f"slurm {state.state}"
    return f"slurm {state.state}: job ended; sweep launch resumes or fails the trial"
