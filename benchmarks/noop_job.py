"""A trial job that trains nothing: it writes what the launcher reads (one metrics line) and returns.

A module-level function, so that submitit pickles it by reference and a local job's fresh Python
process imports it (`benchmarks` must be importable there: run from the repository root, or put the
root on PYTHONPATH as benchmarks/overhead.py does). It imports neither torch nor optuna.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from trainer.metrics import EpochMetrics, TrainResult
from trainer.paths import RunPaths


def noop(config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """One finished epoch whose val_acc is the config's lr; returns the TrainResult as a dict."""
    record = EpochMetrics(
        epoch=1,
        train_loss=1.0,
        train_acc=0.5,
        val_loss=1.0,
        val_acc=float(config["lr"]),  # any value: the trials only have to differ
        lr=float(config["lr"]),
        epoch_seconds=0.0,
        images_per_second=0.0,
    )
    with open(RunPaths(Path(run_dir)).metrics, "a") as handle:  # what trainer.files.append_line writes,
        handle.write(record.to_json() + "\n")  # less its fsync and its torch import
    return dataclasses.asdict(TrainResult.from_history([record], parameters=0))
