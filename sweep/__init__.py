"""sweep: Optuna studies of training jobs, launched through submitit onto SLURM or local processes.

`sweep.log_epoch` is the one name a training program may import: it loads nothing heavy.
"""

from sweep.log import log_epoch

__version__ = "0.1.0"
__all__ = ["__version__", "log_epoch"]
