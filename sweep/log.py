"""`sweep.log_epoch`: append one epoch's metrics to `$SWEEP_RUN_DIR/metrics.jsonl`, the file the launcher
reads. Imports nothing heavy (no torch, optuna or submitit), so any training program may call it; it
writes through the project's one atomic writer, `trainer.files`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from trainer.files import append_line, write_atomic

METRICS_FILE = "metrics.jsonl"


def log_epoch(epoch: int, run_dir: str | os.PathLike[str] | None = None, **metrics: float) -> None:
    """Record the metrics of finished epoch `epoch` (from 1), e.g. `log_epoch(3, val_acc=0.91, loss=0.3)`.

    A line for an epoch already logged (a run resumed from a checkpoint taken before it) is replaced,
    never doubled. `run_dir` defaults to $SWEEP_RUN_DIR; with neither (the script run by hand, not by
    sweep) the epoch's values are printed to stderr instead, so one script runs both ways.

    Raises:
        ValueError: `epoch` is not an integer >= 1, or a metric is not a number.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"epoch must be an integer >= 1, got {epoch!r}")
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"metric {key} must be a number, got {value!r}")
    folder = run_dir if run_dir is not None else os.environ.get("SWEEP_RUN_DIR")
    if not folder:
        print(by_hand_line(epoch, metrics), file=sys.stderr, flush=True)
        return
    path = Path(folder) / METRICS_FILE
    line = json.dumps({"epoch": epoch, **metrics})
    lines = _lines(path)
    if all((_epoch(old) or 0) < epoch for old in lines):
        append_line(path, line)  # the usual case: a new epoch goes at the end
        return
    kept = [old for old in lines if (_epoch(old) or 0) < epoch]  # this epoch and later ones: the lost run's
    write_atomic(path, "".join(old + "\n" for old in kept) + line + "\n")


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _epoch(line: str) -> int | None:
    try:
        value = json.loads(line).get("epoch")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def by_hand_line(epoch: int, metrics: dict[str, float]) -> str:
    """An epoch's values as `log_epoch` prints them outside sweep: `epoch 3  val_acc 0.91  loss 0.3`."""
    return "  ".join([f"epoch {epoch}", *(f"{key} {value:g}" for key, value in metrics.items())])
