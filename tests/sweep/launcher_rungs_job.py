"""A job for synchronous-halving tests: it honours `stop_after_epoch` as TrainJob does, resumes where its
run dir's metrics.jsonl stops, and logs val_acc = lr x epoch / 10 (so a larger lr ranks first at every
rung), counting each start in `starts`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.metrics import read_epochs


@dataclass
class RungJob:
    stop_after_epoch: int | None = None
    restart_at_one: bool = False  # a program that cannot resume: it starts again at epoch 1

    def __call__(self, config: dict[str, Any], run_dir: str) -> None:
        metrics = Path(run_dir) / "metrics.jsonl"
        starts = Path(run_dir) / "starts"
        starts.write_text(str(int(starts.read_text()) + 1 if starts.exists() else 1))
        done = 0 if self.restart_at_one else len(read_epochs(metrics))
        epochs = int(config["epochs"])
        last = epochs if self.stop_after_epoch is None else min(epochs, self.stop_after_epoch)
        with metrics.open("a") as handle:
            for epoch in range(done + 1, last + 1):
                value = float(config["lr"]) * epoch / 10
                handle.write(json.dumps({"epoch": epoch, "val_acc": value, "val_loss": 1 - value}) + "\n")
