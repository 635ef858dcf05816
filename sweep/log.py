"""`sweep.log_epoch`: append one epoch's metrics to `$SWEEP_RUN_DIR/metrics.jsonl`, the file the launcher
reads (its format: `trainer.metrics`). Imports nothing heavy (no torch, optuna or submitit), so any
training program may call it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from trainer.metrics import write_epoch
from trainer.paths import RunPaths
from trainer.ranks import is_other_rank
from trainer.rung_word import RUNG_EPOCHS, rung_contract
from trainer.stop import STOP_AFTER_EPOCH, stop_after_epoch


def log_epoch(epoch: int, run_dir: str | os.PathLike[str] | None = None, **metrics: float) -> None:
    """Record the metrics of finished epoch `epoch` (from 1), e.g. `log_epoch(3, val_acc=0.91, loss=0.3)`.

    A line for an epoch already logged (a run resumed from a checkpoint taken before it) is replaced,
    never doubled. `run_dir` defaults to $SWEEP_RUN_DIR; with neither (the script run by hand, not by
    sweep) the epoch's values are printed to stderr instead, so one script runs both ways.

    Pausing: when the launcher sets $SWEEP_STOP_AFTER_EPOCH (a trial waiting at a rung of synchronous
    successive halving) and `epoch` is at or past it, this call ends the program with exit status 0
    (`sys.exit(0)`) once the line is written. So save the epoch's checkpoint in $SWEEP_RUN_DIR BEFORE
    calling log_epoch for it: the launcher later starts the program again on the same run dir, and it
    must resume from that checkpoint (at the next epoch), not start over.

    Waiting at a rung: when the launcher sets $SWEEP_RUNG_EPOCHS (pruner `successive_halving`,
    `hyperband` or `median`: the epochs at which it decides whether the trial goes on) and `epoch` is one
    of them, this call returns only once the launcher has read the line and given its word, a file in
    the run dir (`trainer.rung_word`): go on, and it returns; stop (the trial was pruned), and it ends
    the program with exit status 0 (`sys.exit(0)`), so that no epoch is trained past the rung for
    nothing. The wait is a fraction of a second; with no word within $SWEEP_RUNG_WAIT_S seconds
    (default 300; 0: never wait) it returns, saying so on stderr. Checkpoint before this call, as above.

    Several ranks (a trial of `[resources] tasks_per_node` > 1, or torchrun): from a rank other than 0
    ($RANK > 0) the call writes and prints nothing, so a trial has one voice and every rank may call it;
    the pause and the wait at a rung above still apply on every rank (each reads the launcher's word in
    the shared run dir), so that all of them stop at the same epoch.

    Raises:
        ValueError: `epoch` is not an integer >= 1, or a metric is not a number.
        UserError: $SWEEP_STOP_AFTER_EPOCH is set to anything but a positive integer, or
            $SWEEP_RUNG_EPOCHS or $SWEEP_RUNG_WAIT_S to anything they may not hold.
        SystemExit: (status 0) the pause above, or the launcher's word to stop at a rung.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"epoch must be an integer >= 1, got {epoch!r}")
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"metric {key} must be a number, got {value!r}")
    stop = stop_after_epoch()  # a bad value fails before the line is written
    rungs = rung_contract()
    quiet = is_other_rank()  # only rank 0 speaks for the trial
    folder = run_dir if run_dir is not None else os.environ.get("SWEEP_RUN_DIR")
    if folder and not quiet:
        write_epoch(RunPaths(Path(folder)).metrics, {"epoch": epoch, **metrics})
    elif not quiet:
        print(by_hand_line(epoch, metrics), file=sys.stderr, flush=True)
    if stop is not None and epoch >= stop:
        if not quiet:
            print(
                f"sweep: paused after epoch {epoch} ({STOP_AFTER_EPOCH}={stop})", file=sys.stderr, flush=True
            )
        sys.exit(0)
    if rungs is not None and folder and not rungs.go_on(Path(folder), epoch, say=_silent if quiet else None):
        if not quiet:
            print(
                f"sweep: stopped after rung epoch {epoch} ({RUNG_EPOCHS}): the trial was pruned",
                file=sys.stderr,
                flush=True,
            )
        sys.exit(0)


def _silent(line: str) -> None:
    """What a rank other than 0 says: nothing."""


def by_hand_line(epoch: int, metrics: dict[str, float]) -> str:
    """An epoch's values as `log_epoch` prints them outside sweep: `epoch 3  val_acc 0.91  loss 0.3`."""
    return "  ".join([f"epoch {epoch}", *(f"{key} {value:g}" for key, value in metrics.items())])
