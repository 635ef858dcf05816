"""What one trial's job runs, on a compute node or in a local process: `trainer.run` on its run dir.

The job gets plain data (a TrainConfig dict and a path), so the pickle submitit ships holds nothing
but this module's class; torch is imported inside the job, never by the launcher.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import submitit.helpers


def train(config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Train `config` in `run_dir` (resuming from its checkpoint.pt) and return the TrainResult as a dict.

    Raises:
        SweepError: A bad config, missing data, or a run dir holding another config's checkpoint.
    """
    import trainer  # trainer.run imports torch on first use: only here, in the job

    result = trainer.run(trainer.TrainConfig.from_dict(config), Path(run_dir), progress=True)
    return dataclasses.asdict(result)


class TrainJob(submitit.helpers.Checkpointable):
    """The submitted callable. On a SLURM timeout or preemption submitit calls `checkpoint`, which
    requeues the same call; the trainer then resumes from the run dir's checkpoint.pt."""

    def __call__(self, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
        return train(config, run_dir)
