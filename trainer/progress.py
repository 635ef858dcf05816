"""Terminal progress for runs by hand: a header, a step counter on a terminal, one line per epoch."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from trainer.config import TrainConfig
from trainer.metrics import EpochMetrics, TrainResult

STEP_REFRESH_SECONDS = 0.5


class Progress:
    """Prints to `stream` (stdout); silent when disabled. The step counter shows only on a terminal."""

    def __init__(self, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.interactive = enabled and self.stream.isatty()
        self._last_refresh = 0.0

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def start(self, config: TrainConfig, *, parameters: int, train: int, val: int, done_epochs: int) -> None:
        self.line(
            f"PreAct ResNet-{config.depth} ({parameters:,} parameters), {config.optimizer} lr {config.lr:g}, "
            f"{config.dataset}: {train:,} train / {val:,} val images, batch {config.batch_size}, "
            f"{config.epochs} epoch{'s' if config.epochs != 1 else ''} on {config.device}"
        )
        if done_epochs:
            self.line(f"resuming at epoch {done_epochs + 1} ({done_epochs} of {config.epochs} done)")

    def step(self, epoch: int, step: int, steps: int) -> None:
        now = time.monotonic()
        if self.interactive and (now - self._last_refresh >= STEP_REFRESH_SECONDS or step == steps):
            self._last_refresh = now
            print(f"\repoch {epoch} step {step}/{steps}", end="", file=self.stream, flush=True)

    def epoch(self, record: EpochMetrics, epochs: int) -> None:
        if self.interactive:
            print("\r\033[K", end="", file=self.stream)  # clear the step counter
        width = len(str(epochs))
        text = (
            f"epoch {record.epoch:>{width}}/{epochs}"
            f"  train loss {record.train_loss:.4f} acc {record.train_acc:6.2%}"
            f"  val loss {record.val_loss:.4f} acc {record.val_acc:6.2%}"
        )
        if record.test_acc is not None:
            text += f"  test loss {record.test_loss:.4f} acc {record.test_acc:6.2%}"
        if record.test_acc_best_val is not None:
            text += f" (best-val epoch's weights: {record.test_acc_best_val:6.2%})"
        text += f"  lr {record.lr:.4g}  {record.epoch_seconds:.1f}s  {record.images_per_second:,.0f} img/s"
        self.line(text)

    def done(self, result: TrainResult, run_dir: str) -> None:
        test = ""
        if result.test_acc_best_val is not None:
            test += f", test acc {result.test_acc_best_val:.2%} with its weights"
        if result.test_acc is not None:
            test += f", {result.test_acc:.2%} with the last epoch's"
        best = f"best val acc {result.best_val_acc:.2%} at epoch {result.best_epoch}"
        self.line(f"done: {best}{test}; files in {run_dir}")
