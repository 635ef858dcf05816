"""sbatch as a shared cluster wants it: paced, its transient failures ridden out, its limits waited for.

- Paced: at least SUBMIT_GAP_S between two sbatch calls of one launcher, so a wave of trials is at most
  four calls a second. One sbatch per trial, not a job array: each trial keeps its own job id, submitit
  folder and run dir, so a pruned trial's job is cancelled alone, a requeue resumes that trial only,
  and a trial held by a submission limit waits without holding the others. The pacing costs a wave of 50
  trials 12 s, once.
- Transient: an sbatch that fails because the controller is unreachable, busy or timed out is tried
  again with back-off (2 s doubling to 60 s) for as long as `[waits] scheduler_outage_min` allows;
  one line when the outage starts, one when it ends. The launcher's submissions (`hold=True`) are not
  retried here: each failed try raises `SubmitHeld` with the back-off's next wait, and the launcher
  holds the trial and tries again on that schedule while it goes on watching its running trials
  (`sweep.launcher.held`); the outage limit is counted across the tries. sbatch can time out after
  slurmctld took the job: before submitting again, squeue is asked for a job of the trial's name that
  this launcher does not know, and that job is adopted (its pickled function moved where the job looks
  for it).
- Submission limits (QOSMaxSubmitJobPerUserLimit, AssocMaxSubmitJobLimit, MaxJobCount, ...): raised as
  `SubmitHeld`; the launcher holds the trial until one of its jobs ends, and the refusal is not counted
  as a submission of the trial.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError

from sweep.errors import Printer, SweepError, last_line
from sweep.executors.base import SubmitHeld
from sweep.executors.slurm_queries import controller_problem

SUBMIT_GAP_S = 0.25  # between two sbatch calls: at most 4 a second
FIRST_RETRY_S, LAST_RETRY_S = 2.0, 60.0  # back-off of a transient failure: doubled from first to last
SQUEUE_TIMEOUT_S = 30.0
# sbatch's words for a controller that did not answer (the job may or may not have been taken)
TRANSIENT = (
    "unable to contact slurm controller",
    "socket timed out",
    "temporarily unable",
    "resource temporarily unavailable",
    "connection refused",
    "connection timed out",
    "zero bytes were transmitted",
    "communication connection failure",
)
# sbatch's words for a submission limit: the job was refused, and will be taken once a job ends
LIMITS = ("maxsubmitjob", "maxjobcount", "job submit limit", "submit limit")


def classify(message: str) -> str:
    """`limit`, `transient` or `refused` (a bad partition, more GPUs than a node has: final)."""
    said = message.lower()
    if any(word in said for word in LIMITS):
        return "limit"
    if any(word in said for word in TRANSIENT):
        return "transient"
    return "refused"


def limit_name(message: str) -> str:
    """The limit's own name (QOSMaxSubmitJobPerUserLimit, ...) where sbatch says it, else its words."""
    found = re.search(r"\b(\w*Max\w*Limit|MaxJobCount)\b", message)
    return found.group(1) if found else last_line(message)


class Submitter:
    """One launcher's sbatch calls: `submit` returns a job id, or raises SubmitHeld or SweepError."""

    def __init__(self, outage_s: float, out: Printer, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.outage_s = outage_s
        self.out = out
        self.sleep = sleep
        self._last = 0.0  # monotonic time of the last sbatch
        self._outage_since: float | None = None
        self._backoff = FIRST_RETRY_S  # the next wait of a held submission (`hold`): doubled at each failure

    def submit(
        self,
        executor: submitit.SlurmExecutor,
        fn: Any,
        args: tuple[Any, ...],
        name: str,
        *,
        what: str,
        hold: bool = False,
    ) -> str:
        """sbatch one job of name `name` (paced, transient failures retried); its job id. `what`: the job
        as an error line names it. `hold`: a transient failure raises SubmitHeld(retry_s=the back-off's
        next wait) instead of sleeping here (the caller tries again then).

        Raises:
            SubmitHeld: a submission limit (or, with `hold`, a transient failure); SweepError: sbatch
                refused the job, or an outage outlasted the limit.
        """
        wait = FIRST_RETRY_S
        if hold:  # `scontrol ping` first: milliseconds, up or down, where a failing sbatch takes 9 s
            if controller_problem() is not None:
                self._outage("scontrol ping: the controller is down")
                self._backoff, retry = min(2 * self._backoff, LAST_RETRY_S), self._backoff
                raise SubmitHeld("slurm controller down", retry_s=retry)
            if self._outage_since is not None:  # an sbatch that failed may have been taken all the same
                adopted = adopt(executor.folder, name)
                if adopted is not None:
                    self._outage_over()
                    return adopted
        while True:
            self._pace()
            try:
                job = executor.submit(fn, *args)
            except FailedJobError as err:
                message = str(err)
                kind = classify(message)
                if kind == "limit":
                    self._outage_over()
                    raise SubmitHeld(limit_name(message)) from None
                if kind == "refused":
                    self._outage_over()
                    raise SweepError(f"sbatch refused the job {what}: {last_line(err)}") from None
                # it may have taken the job before it timed out; with the controller down, squeue would
                # take 18 s to fail: a held submission asks again on its next try, as above
                up = not hold or controller_problem() is None
                adopted = adopt(executor.folder, name) if up else None
                if adopted is not None:
                    self._outage_over()
                    return adopted
                self._outage(last_line(err))
                if hold:
                    self._backoff, retry = min(2 * self._backoff, LAST_RETRY_S), self._backoff
                    raise SubmitHeld(f"sbatch: {last_line(err)}", retry_s=retry) from None
                self.sleep(wait)
                wait = min(2 * wait, LAST_RETRY_S)
                continue
            self._outage_over()
            return str(job.job_id)

    def _pace(self) -> None:
        gap = self._last + SUBMIT_GAP_S - time.monotonic()
        if gap > 0:
            time.sleep(gap)
        self._last = time.monotonic()

    def _outage(self, said: str) -> None:
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            minutes = self.outage_s / 60
            self.out(
                f"slurm: sbatch failed ({said}); retrying with back-off for up to {minutes:g} min "
                "([waits] scheduler_outage_min), running trials still watched"
            )
        elif now - self._outage_since > self.outage_s:
            raise SweepError(
                f"slurm: sbatch has failed for {(now - self._outage_since) / 60:.0f} min ({said}); "
                "raise [waits] scheduler_outage_min or check the cluster, then `sweep launch` again "
                "(running jobs are re-attached)"
            )

    def _outage_over(self) -> None:
        self._backoff = FIRST_RETRY_S
        if self._outage_since is not None:
            self.out(f"slurm: sbatch answers again after {time.monotonic() - self._outage_since:.0f} s")
            self._outage_since = None


def adopt(folder: Path, name: str) -> str | None:
    """The id of a live job named `name` whose sbatch failed after slurmctld took it, made runnable:
    submitit left its pickled function under a temporary name, which the job waits for as
    `<id>_submitted.pkl`. None when squeue lists no such job (or does not answer)."""
    try:
        done = subprocess.run(
            ["squeue", "-h", "-n", name, "-o", "%i"],
            capture_output=True,
            text=True,
            timeout=SQUEUE_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    ids = sorted((line.strip() for line in done.stdout.splitlines() if line.strip().isdigit()), key=int)
    known = {path.name.split("_")[0] for path in Path(folder).glob("*_submitted.pkl")}
    new = [job_id for job_id in ids if job_id not in known]
    if done.returncode != 0 or not new:
        return None
    pickles = sorted(Path(folder).glob("*.pkl"), key=lambda path: path.stat().st_mtime)
    waiting = [path for path in pickles if re.fullmatch(r"[0-9a-f]{32}\.pkl", path.name)]
    if not waiting:
        return None
    job_id = new[-1]
    waiting[-1].rename(Path(folder) / f"{job_id}_submitted.pkl")
    return job_id
