"""The training side of sweep: PreAct ResNet on CIFAR-10, resumable; knows nothing of Optuna or SLURM."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer.config import TrainConfig
from trainer.errors import UserError
from trainer.metrics import EpochMetrics, TrainResult, read_metrics
from trainer.paths import RunPaths

if TYPE_CHECKING:
    from trainer.train import run

__all__ = ["EpochMetrics", "RunPaths", "UserError", "TrainConfig", "TrainResult", "read_metrics", "run"]


def __getattr__(name: str) -> Any:
    # `run` needs torch; the launcher and the study parser only need the plain data types above,
    # so torch is imported when `run` is first used, not with the package.
    if name == "run":
        from trainer.train import run

        return run
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
