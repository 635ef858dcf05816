"""The training side of sweep: PreAct ResNet on CIFAR-10, resumable; knows nothing of Optuna or SLURM."""

from trainer.config import TrainConfig
from trainer.errors import SweepError
from trainer.metrics import EpochMetrics, TrainResult, read_metrics
from trainer.paths import RunPaths
from trainer.train import run

__all__ = ["EpochMetrics", "RunPaths", "SweepError", "TrainConfig", "TrainResult", "read_metrics", "run"]
