"""A SLURM job's requeues (at its time limit, or preempted), as its run dir records them.

submitit calls the job's `checkpoint` when SLURM signals the end of its time (or a preemption); sweep's
jobs then requeue themselves to resume from their checkpoint. Each such requeue appends one line to
`<run_dir>/requeues.jsonl` (the job id, the restart, the last epoch logged, the cause), which the
launcher reads to say it, with no call to SLURM. A job that reaches its time limit a second time with
no new epoch since the first would requeue for ever (each attempt too short for one epoch): it is not
requeued again, and fails its trial with a reason that says what to change.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sweep.errors import SweepError
from trainer.metrics import read_epochs
from trainer.paths import RunPaths

FILE = "requeues.jsonl"
UNKNOWN = "time limit or preemption"  # squeue did not say how long the job had left
NEAR_END_S = (
    180.0  # a checkpoint this close to the job's end is its time limit (submitit signals 90 s before)
)


@dataclass(frozen=True)
class Requeue:
    """One requeue of a trial's job."""

    job_id: str
    restart: int  # SLURM_RESTART_COUNT of the attempt that ended (0: the first)
    epoch: int  # the last epoch in metrics.jsonl when it ended (0: none)
    cause: str  # "time limit" | "preemption" (a checkpoint far from the job's end) | UNKNOWN
    time: float  # Unix time


def record(run_dir: Path) -> Requeue:
    """Append this attempt's requeue to the run dir's record (called from a job's `checkpoint`).

    Raises:
        SweepError: the time limit was reached twice with no new epoch in between: requeueing again
            would loop; the job ends and its trial fails with this reason.
    """
    history = read_epochs(RunPaths(run_dir).metrics)
    epoch = max((int(entry["epoch"]) for entry in history), default=0)
    job_id = os.environ.get("SLURM_JOB_ID", "")
    left = _seconds_left(job_id)
    cause = UNKNOWN if left is None else "time limit" if left <= NEAR_END_S else "preemption"
    now = Requeue(job_id, int(os.environ.get("SLURM_RESTART_COUNT") or 0), epoch, cause, time.time())
    before = read(run_dir)
    if cause == "time limit" and before and before[-1].cause == cause and before[-1].epoch == epoch:
        after = f"after epoch {epoch}" if epoch else "before its first epoch"
        raise SweepError(
            f"time limit reached twice without progress (each attempt ended {after}); raise [resources] "
            "timeout_min so that an epoch fits in one job"
        )
    with (run_dir / FILE).open("a") as handle:
        handle.write(json.dumps(asdict(now)) + "\n")
    return now


def read(run_dir: Path) -> list[Requeue]:
    """The requeues recorded in `run_dir`, oldest first (none when there is no record)."""
    try:
        lines = (run_dir / FILE).read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            found.append(Requeue(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line cut short by a full disk: the others still count
    return found


def _seconds_left(job_id: str) -> float | None:
    """squeue's time left of the job (one call, at a checkpoint only); None when unknown."""
    if not job_id:
        return None
    try:
        done = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%L"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", done.stdout.strip())
    if done.returncode != 0 or match is None:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
