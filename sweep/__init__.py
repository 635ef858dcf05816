"""sweep: Optuna studies of training jobs, launched through submitit onto SLURM or local processes."""

__version__ = "0.1.0"
