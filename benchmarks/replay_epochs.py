"""A training program that replays one learning curve: `python replay_epochs.py CURVES.json KEY EPOCH_S`.

Each epoch it sleeps EPOCH_S seconds (the launcher sees it as a real job's epoch, only shorter), then
appends the curve's epoch to $SWEEP_RUN_DIR/metrics.jsonl as sweep's contract asks: `epoch`, `val_acc`
(the surrogate's val_accuracy, %), `train_time` (the surrogate's training seconds so far) and `at` (the
wall clock). Restarted on the same run dir it continues after the last epoch logged; with
SWEEP_STOP_AFTER_EPOCH set (synchronous halving) it exits 0 after that epoch. SIGTERM stops it
at once (Python's default), as a training program that saves nothing would stop. Imports only the
standard library, so that a start costs a plain interpreter's.
"""

import json
import os
import sys
import time


def main(curves_file: str, key: str, epoch_s: float) -> None:
    with open(curves_file) as handle:
        curve = json.load(handle)[key]
    metrics = os.path.join(os.environ["SWEEP_RUN_DIR"], "metrics.jsonl")
    done = 0
    if os.path.exists(metrics):
        with open(metrics) as handle:
            done = sum(1 for line in handle if line.strip())
    stop = int(os.environ.get("SWEEP_STOP_AFTER_EPOCH") or len(curve["val_accuracy"]))
    for epoch in range(done + 1, min(stop, len(curve["val_accuracy"])) + 1):
        time.sleep(epoch_s)
        line = {
            "epoch": epoch,
            "val_acc": curve["val_accuracy"][epoch - 1],
            "train_time": curve["time"][epoch - 1],
            "at": time.time(),
        }
        with open(metrics, "a") as handle:
            handle.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
