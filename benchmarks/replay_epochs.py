"""A training program that replays one learning curve: `python replay_epochs.py CURVES.json KEY EPOCH_S`.

Each epoch it sleeps EPOCH_S seconds (the launcher sees it as a real job's epoch, only shorter), then
logs the curve's epoch with `sweep.log_epoch`, as a user's program would: `epoch`, `val_acc` (the
surrogate's val_accuracy, %), `train_time` (the surrogate's training seconds so far) and `at` (the wall
clock). Restarted on the same run dir it continues after the last epoch logged. `log_epoch` honours the
launcher's word: with SWEEP_STOP_AFTER_EPOCH set (synchronous halving) it exits 0 after that epoch, and
at a rung of SWEEP_RUNG_EPOCHS (an asynchronous pruner) it waits for the launcher's go or stop
(`trainer.rung_word`). SIGTERM stops it at once (Python's default), as a training program that saves
nothing would stop. Imports only the standard library and `sweep.log_epoch` (no torch, Optuna or
submitit), so that a start costs little more than a plain interpreter's.
"""

import json
import os
import sys
import time

from sweep import log_epoch


def main(curves_file: str, key: str, epoch_s: float) -> None:
    with open(curves_file) as handle:
        curve = json.load(handle)[key]
    metrics = os.path.join(os.environ["SWEEP_RUN_DIR"], "metrics.jsonl")
    done = 0
    if os.path.exists(metrics):
        with open(metrics) as handle:
            done = sum(1 for line in handle if line.strip())
    for epoch in range(done + 1, len(curve["val_accuracy"]) + 1):
        time.sleep(epoch_s)
        log_epoch(
            epoch,
            val_acc=curve["val_accuracy"][epoch - 1],
            train_time=curve["time"][epoch - 1],
            at=time.time(),
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
