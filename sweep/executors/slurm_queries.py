"""What SLURM says of jobs: squeue, sacct, scancel and scontrol ping, each one call, and the cache that
asks about all of a launcher's jobs in one query per poll.

`squeue -t all` asks slurmctld itself: it knows every pending, running or requeued job at once, and
keeps an ended job (COMPLETED, FAILED, CANCELLED, ...) for MinJobAge (300 s by default). sacct is only
asked about jobs squeue no longer lists: slurmdbd learns of states a second or so late, and a job
that slurmctld has forgotten is no longer alive whatever sacct last recorded.

A requeue (scontrol, a preemption, submitit's at a time limit) keeps the job id: live, never gone. squeue's
restart count (RestartCnt) says how often SLURM put the job back in its queue.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sweep.errors import SweepError

COMMAND_TIMEOUT_S = 30.0  # one squeue/sacct/scancel call; slurmctld answers in milliseconds when healthy
GONE = "GONE"  # unknown to squeue and to sacct
SUBMITTED = "submitted"  # a JobState's source for a job submitted since the last query
QUERY_EVERY_S = (
    30.0  # squeue at most this often in steady state ([waits] slurm_query_s); cluster guides ask 30-60 s
)
FAST_S = 5.0  # the first query after a submission comes this soon
CANCEL_RETRY_S = 2.0  # a scancel the controller did not answer is sent again this soon, then later
# A command that waits on SLURM (a cancel's jobs to leave squeue, a detached launcher to stop) asks at
# most this often: it still returns within a second of the jobs' going, at 1 call a second, not 20
WAIT_QUERY_S = 1.0
# States in which SLURM may still run the job (again): the launcher keeps watching these.
LIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "SPECIAL_EXIT", "RESV_DEL_HOLD",
})  # fmt: skip


class SlurmUnavailable(SweepError):
    """squeue or sacct could not be run or did not answer."""


@dataclass(frozen=True)
class JobState:
    """A job's state as SLURM reports it (`CANCELLED by 0` -> `CANCELLED`), and who said so."""

    job_id: str
    state: str  # PENDING, RUNNING, REQUEUED, COMPLETED, FAILED, CANCELLED, NODE_FAIL, OUT_OF_MEMORY, GONE...
    source: str  # squeue | sacct | none | submitted (since the last query: not asked about yet)
    reason: str = ""  # squeue's reason a PENDING job waits (Resources, Priority, QOSMaxJobsPerUserLimit...)
    restarts: int | None = None  # squeue's RestartCnt: how often SLURM requeued it; None: not known

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES and self.source in ("squeue", SUBMITTED)


def require_slurm() -> None:
    """Raise a one-line SweepError when the SLURM client commands are not on PATH."""
    missing = [name for name in ("sbatch", "squeue", "sacct", "scancel") if shutil.which(name) is None]
    if missing:
        raise SweepError(
            f"executor 'slurm' needs the SLURM commands {', '.join(missing)} on PATH; "
            "use --executor local off the cluster (or scripts/slurm-dev-cluster.sh start for a test cluster)"
        )


def partition_nodes(partition: str | None) -> int | None:
    """The nodes of `partition` (the default one when None), asked of sinfo once; None when sinfo is
    missing or does not answer (the check is then left to sbatch)."""
    if shutil.which("sinfo") is None:
        return None
    command = ["sinfo", "-h", "-o", "%D %P"] + (["-p", partition] if partition else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    counts = []
    for line in done.stdout.splitlines():  # one line per node state: "1 debug*", "3 debug*"
        fields = line.split()
        default = len(fields) == 2 and fields[1].endswith("*")
        if len(fields) == 2 and fields[0].isdigit() and (partition is not None or default):
            counts.append(int(fields[0]))
    return sum(counts) if counts else None


def controller_problem() -> str | None:
    """Why the SLURM controller cannot take jobs (`scontrol ping` says it is down or does not answer);
    None when it answers, or when there is no scontrol to ask."""
    if shutil.which("scontrol") is None:
        return None
    try:
        done = _run(["scontrol", "ping"])
    except SlurmUnavailable as err:
        return f"the SLURM controller does not answer ({err}); start it, or use --executor local"
    said = (done.stdout.strip() or done.stderr.strip()).splitlines()
    if done.returncode == 0 and any(line.endswith(" UP") for line in said):  # the primary or a backup
        return None
    first = said[0] if said else f"exit status {done.returncode}"
    return f"the SLURM controller does not answer (scontrol ping: {first}); start it, or use --executor local"


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
    return {job_id: state for job_id, (state, _) in squeue_jobs(job_ids).items()}


def squeue_jobs(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """The jobs slurmctld knows: (state, squeue's reason: why a pending job waits, else "None")."""
    return {job_id: (state.state, state.reason) for job_id, state in squeue_rows(job_ids).items()}


def squeue_rows(job_ids: list[str]) -> dict[str, JobState]:
    """The jobs slurmctld knows, with state, reason and restart count (one squeue call)."""
    if not job_ids:
        return {}
    columns = "JobID:|,State:|,Reason:|,RestartCnt:"  # `|` after each field, no padding
    done = _run(["squeue", "-h", "-t", "all", "-O", columns, "-j", ",".join(job_ids)])
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # none of them is known any more
            return {}
        raise SlurmUnavailable(f"squeue failed: {done.stderr.strip() or done.returncode}")
    jobs: dict[str, JobState] = {}
    for line in done.stdout.splitlines():
        job_id, state, reason, restarts, *_ = [*line.strip().split("|"), "", "", ""]
        if job_id and state and "." not in job_id:
            count = int(restarts) if restarts.strip().isdigit() else None
            jobs[job_id] = JobState(job_id, state.split()[0].rstrip("+"), "squeue", reason.strip(), count)
    return jobs


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    """The last recorded state of each job the accounting database knows."""
    if not job_ids:
        return {}
    done = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)])
    if done.returncode != 0:
        raise SlurmUnavailable(f"sacct failed: {done.stderr.strip() or done.returncode}")
    return _parse(done.stdout)


@dataclass(frozen=True)
class Allocation:
    """One attempt of a job as the accounting database has it: `sacct -D` lists a requeued job's
    earlier runs too, each with its own state and elapsed time."""

    job_id: str
    state: str  # COMPLETED, REQUEUED, PREEMPTED, FAILED, CANCELLED, RUNNING, PENDING, ...
    elapsed_s: int  # ElapsedRaw: seconds it held its allocation (so far, for a running one)
    gpus: int  # gres/gpu=N of AllocTRES; 0 without GPUs
    start: str  # sacct's Start (for ordering; "Unknown" or "None" while pending)


def sacct_allocations(job_ids: Iterable[str]) -> list[Allocation]:
    """Every attempt of the jobs (requeued, preempted, failed ones too), oldest first per job.

    Raises:
        SlurmUnavailable: sacct did not answer.
    """
    ids = sorted(set(job_ids))
    if not ids:
        return []
    fields = "JobID,State,ElapsedRaw,AllocTRES,Start"
    done = _run(["sacct", "-D", "-X", "-n", "-P", "-o", fields, "-j", ",".join(ids)])
    if done.returncode != 0:
        raise SlurmUnavailable(f"sacct failed: {done.stderr.strip() or done.returncode}")
    found = []
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5 or "." in parts[0] or not parts[2].isdigit():
            continue
        job_id, state, elapsed, tres, start = parts
        gpus = re.search(r"(?:^|,)gres/gpu=(\d+)", tres)
        state = state.split()[0].rstrip("+") if state else "UNKNOWN"
        found.append(Allocation(job_id, state, int(elapsed), int(gpus.group(1)) if gpus else 0, start))
    return found


def job_states(job_ids: Iterable[str]) -> dict[str, JobState]:
    """Each job's state: squeue's when slurmctld knows it, else sacct's, else GONE.

    Raises:
        SlurmUnavailable: squeue or sacct did not answer.
    """
    ids = sorted({str(job_id) for job_id in job_ids})
    known = squeue_rows(ids)
    states = dict(known)
    rest = [job_id for job_id in ids if job_id not in known]
    recorded = sacct_states(rest)
    for job_id in rest:
        state = recorded.get(job_id)
        states[job_id] = JobState(job_id, state, "sacct") if state else JobState(job_id, GONE, "none")
    return states


def scancel(job_ids: Iterable[str]) -> bool:
    """Ask SLURM to cancel the jobs (it answers at once; the jobs end KillWait seconds later at most).

    Returns whether slurmctld took the request (or the jobs are gone already); False when it did not
    answer (scancel gives up after about 9 s then).
    """
    ids = [str(job_id) for job_id in job_ids]
    if not ids:
        return True
    done = _run(["scancel", *ids])
    return done.returncode == 0 or "Unable to contact slurm controller" not in done.stderr


class Canceller:
    """A pruned trial's scancel that never blocks the launcher: sent at once when slurmctld answers
    (`scontrol ping`, milliseconds), else kept and sent by a thread once it answers again (asked with
    back-off, CANCEL_RETRY_S doubling to a minute, for up to `outage_s`). A launch whose last trial was
    pruned during an outage waits for it at its end (`finish`), and says so."""

    def __init__(self, outage_s: float, out: Callable[[str], None]) -> None:
        self.outage_s = outage_s
        self.out = out
        self.pending: list[str] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def cancel(self, job_id: str) -> None:
        if controller_problem() is None:
            try:
                if scancel([job_id]):
                    return
            except SlurmUnavailable:
                pass
        with self._lock:
            self.pending.append(job_id)
            if self._thread is not None and self._thread.is_alive():
                return
            # a daemon: a launch that ends waits for it in finish(), where a Ctrl-C is one line
            self._thread = threading.Thread(target=self._retry, name="sweep-scancel", daemon=True)
        self.out(f"slurm: the controller does not answer; job {job_id} is cancelled once it does")
        self._thread.start()

    def finish(self) -> None:
        """Wait, with one line, until the scancels still kept are sent (or the outage limit passed). A
        Ctrl-C meanwhile says which jobs are left to cancel by hand and goes on up (KeyboardInterrupt)."""
        with self._lock:
            thread, jobs = self._thread, ", ".join(self.pending)
        if not jobs or thread is None or not thread.is_alive():
            return
        self.out(
            f"slurm: waiting for the controller to cancel job {jobs} before exiting (up to "
            f"{self.outage_s / 60:g} min); Ctrl-C leaves it to `scancel`"
        )
        try:
            thread.join()
        except KeyboardInterrupt:
            with self._lock:
                left = " ".join(self.pending)
            if left:
                self.out(f"slurm: not cancelled: `scancel {left}` once the controller answers")
            raise

    def _retry(self) -> None:
        wait, since = CANCEL_RETRY_S, time.monotonic()
        while True:
            time.sleep(wait)
            wait = min(2 * wait, 60.0)
            with self._lock:
                ids = list(self.pending)
            try:
                sent = controller_problem() is None and scancel(ids)
            except SlurmUnavailable:
                sent = False
            with self._lock:
                if sent:
                    self.pending = [job_id for job_id in self.pending if job_id not in ids]
                if not self.pending or time.monotonic() - since > self.outage_s:
                    break
        if self.pending:
            self.out(f"slurm: jobs {', '.join(self.pending)} could not be cancelled; `scancel` them by hand")
        else:
            self.out(f"slurm: the controller answers again; job {', '.join(ids)} cancelled")


class StateCache:
    """The states of the jobs one launcher watches, asked of SLURM together (one squeue, and one sacct for
    the jobs squeue no longer lists) at most every `query_every_s` seconds: a study of 50 running trials costs
    the same one call a poll as one of a single trial, and a pending job no more than a running one.

    A job submitted since the last query is not asked about at once (a wave of ten submissions would be
    ten queries): it counts as pending, submitted, until the next query, which `soon()` (called at each
    submission) brings forward to FAST_S seconds from now, so a job that cannot start is seen quickly.
    Between queries the launcher learns of a job's end from its run dir (`SlurmJob.done`).
    """

    def __init__(self, query_every_s: float = QUERY_EVERY_S) -> None:
        self.watched: set[str] = set()
        self.query_every_s = query_every_s
        self.queries = 0  # how many times SLURM was asked (squeue, plus sacct when needed)
        self._states: dict[str, JobState] = {}
        self._queried = -math.inf  # monotonic time of the last query
        self._soon = math.inf  # a query is due by then whatever query_every_s says (`soon`, a failed query)

    def get(self, job_id: str, *, fresh: bool = False) -> JobState:
        """The job's state; `fresh` forces a query now.

        Raises:
            SlurmUnavailable: squeue or sacct did not answer (the next query is then FAST_S away).
        """
        self.watched.add(job_id)
        now = time.monotonic()
        if fresh or now >= min(self._queried + self.query_every_s, self._soon):
            self._queried, self._soon = now, now + FAST_S  # if the query fails: again soon, not at once
            # `scontrol ping` first (milliseconds, up or down): squeue would take 18 s to fail, and the
            # launcher's loop, which records ends and prunes from the run dirs, would wait for it
            if controller_problem() is not None:
                raise SlurmUnavailable("squeue not asked: scontrol ping says the controller is down")
            self.queries += 1
            self._states = job_states(self.watched)
            self._soon = math.inf
        return self._states.get(job_id) or JobState(job_id, "PENDING", SUBMITTED)

    def answered(self, job_id: str) -> bool:
        """Whether the last query said what the job is (not one re-attached or submitted since)."""
        return job_id in self._states

    def since_query(self) -> float:
        """Seconds since the last query (infinite before the first)."""
        return time.monotonic() - self._queried

    def soon(self) -> None:
        """Query within FAST_S seconds: a job was just submitted."""
        self._soon = min(self._soon, time.monotonic() + FAST_S)

    def forget(self, job_id: str) -> None:
        """Stop querying a job whose end the launcher has dealt with."""
        self.watched.discard(job_id)
        self._states.pop(job_id, None)
