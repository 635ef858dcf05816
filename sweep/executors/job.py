"""What one trial's job runs, on a compute node or in a local process: `trainer.run` on its run dir.

The job gets plain data (a TrainConfig dict and a path), so the pickle submitit ships holds nothing
but this module's class; torch is imported inside the job, never by the launcher.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from typing import Any

import submitit.helpers
from submitit.helpers import DelayedSubmission

# Requeues one SLURM job may go through (time limits, preemptions, `scontrol requeue`), each resuming
# from checkpoint.pt: a trial whose epochs outlast its time limit this often is failed, not requeued forever.
MAX_REQUEUES = 20


def train(config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Train `config` in `run_dir` (resuming from its checkpoint.pt) and return the TrainResult as a dict.

    Raises:
        SweepError: A bad config, missing data, or a run dir holding another config's checkpoint.
    """
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus:  # torch would start one thread per core of the node, not of the job's allocation
        os.environ.setdefault("OMP_NUM_THREADS", cpus)
    import trainer  # trainer.run imports torch on first use: only here, in the job

    result = trainer.run(trainer.TrainConfig.from_dict(config), Path(run_dir), progress=True)
    return dataclasses.asdict(result)


def _exit_at_sigterm(signum: int, frame: Any) -> None:
    """SLURM's SIGTERM (scancel, scontrol requeue, preemption): exit now, with no result pickle, so
    that a requeued run starts afresh from checkpoint.pt. submitit ignores SIGTERM, which would keep a
    pruned or requeued job training for KillWait seconds (30 by default) until its SIGKILL."""
    print("sweep: SIGTERM; stopping (a requeued run resumes from checkpoint.pt)", flush=True)
    os._exit(128 + signal.SIGTERM)  # files are written atomically: nothing is left half-written


def restarts() -> int:
    """How often SLURM has started this job again (0 on its first run, and outside SLURM)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


class TrainJob(submitit.helpers.Checkpointable):
    """The submitted callable. On a SLURM timeout or preemption submitit calls `checkpoint`, which
    requeues the same call (same job id); the trainer then resumes from the run dir's checkpoint.pt.
    A requeue that did not go through `checkpoint` (`scontrol requeue`, a node failure) runs the
    same call again and resumes the same way. At most MAX_REQUEUES requeues per job."""

    def __call__(self, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
        if os.environ.get("SLURM_JOB_ID"):
            signal.signal(signal.SIGTERM, _exit_at_sigterm)
        count = restarts()
        if count > MAX_REQUEUES:
            raise RuntimeError(f"job requeued {count} times (MAX_REQUEUES={MAX_REQUEUES}); giving up")
        if count:
            print(f"sweep: restart {count} of this job; resuming from {run_dir}/checkpoint.pt", flush=True)
        return train(config, run_dir)

    # submitit's own code accepts None here (no requeue); its annotation does not say so
    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission | None:  # type: ignore[override]
        """Requeue the same call, unless this job has been requeued MAX_REQUEUES times already."""
        if restarts() >= MAX_REQUEUES:
            return None  # submitit then ends the job with "checkpoint function returned None"
        print("sweep: time limit or preemption; requeueing to resume from checkpoint.pt", flush=True)
        return DelayedSubmission(self, *args, **kwargs)
