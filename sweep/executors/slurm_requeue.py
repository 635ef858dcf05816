"""A program killed by SLURM's signal while its job is requeued: not a failed trial.

`scontrol requeue`, a preemption or a node failure SIGTERMs (later SIGKILLs) every process of the job at
once. When the program dies before the job wrapper handles its own SIGTERM, the wrapper sees a program
that "exited with status -15", and submitit stores that as the job's result, although SLURM puts the
job back in its queue and runs it again under the same id. So before such a result ends a trial, SLURM
is asked (one fresh squeue): a job it lists as pending or requeued, or running again with a higher
restart count than the attempt that stored the result, was requeued: the result is stale, and the
launcher keeps watching the job. A job that ended (or that squeue and sacct no longer list) failed.
While SLURM cannot tell yet (the job is completing, or runs with the same restart count for the instant
between the result and its end, or squeue does not answer), the result waits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from sweep.executors.slurm_queries import JobState
from trainer.manifest import read_manifest

# ProgramFailed's words for a program ended by SIGTERM or SIGKILL (-15/-9), or by a shell's 128 + signal
SIGNAL_EXIT = re.compile(r"exited with status (-15|-9|143|137)\b")
# squeue states of a job SLURM put back in its queue: it runs again under the same id
BACK_IN_QUEUE = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})

Verdict = Literal["requeued", "unsure", "ended"]


def killed_by_signal(detail: str) -> bool:
    """Whether a job's error says its program died of SIGTERM or SIGKILL (what a requeue sends)."""
    return SIGNAL_EXIT.search(detail) is not None


def attempt_restart(run_dir: Path, job_id: str) -> int | None:
    """The restart count (SLURM_RESTART_COUNT) of the last attempt of `job_id` that ended, from the run
    dir's manifest.json (the program's wrapper records each start and end); None when not recorded."""
    ended = [a for a in read_manifest(run_dir) if a.slurm_job_id == job_id and a.ended is not None]
    return (ended[-1].slurm_restart_count or 0) if ended else None


def verdict(state: JobState | None, attempt: int | None) -> Verdict:
    """What SLURM's `state` of a job (asked after its result appeared) says of a result its attempt
    `attempt` (restart count; None: not known) stored after its program died of a signal.

    requeued: the job will run again (the result is stale); ended: the result is the job's; unsure:
    SLURM cannot tell yet (ask again).
    """
    if state is None or state.source not in ("squeue", "sacct", "none"):  # no answer, or not asked yet
        return "unsure"
    if state.source != "squeue" or not state.live:  # ended, or forgotten by slurmctld: the job is over
        return "ended"
    if state.state in BACK_IN_QUEUE:
        return "requeued"
    if state.restarts is not None and attempt is not None and state.restarts > attempt:
        return "requeued"  # running (or completing, configuring) again: a later attempt
    return "unsure"  # the instant between the result and the job's end, or a requeue still completing
