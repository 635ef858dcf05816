"""What a run reports: EpochMetrics (a line of metrics.jsonl) and TrainResult (result.json)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import UserError

TEST_KEYS = ("test_loss", "test_acc", "test_loss_best_val", "test_acc_best_val")


@dataclass(frozen=True)
class EpochMetrics:
    """One finished epoch. Accuracies are fractions in [0, 1]; losses are mean cross-entropy."""

    epoch: int  # 1-based
    train_loss: float  # on augmented training batches, in train mode
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float  # learning rate used during this epoch
    epoch_seconds: float  # wall time of training plus evaluation
    images_per_second: float  # training images per second of training time
    # Final epoch only, when the config evaluates the test set, once: with the final weights (test_*)
    # and with those of the best validation epoch, best.pt (test_*_best_val).
    test_loss: float | None = None
    test_acc: float | None = None
    test_loss_best_val: float | None = None
    test_acc_best_val: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in TEST_KEYS:  # absent rather than null: the lines of other epochs stay as they were
            if data[key] is None:
                del data[key]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochMetrics:
        return cls(**data)


def read_metrics(path: Path) -> list[EpochMetrics]:
    """Every whole line of a metrics.jsonl; a missing file is an empty list.

    A last line without its newline is a write in progress (the file is polled while the trainer
    appends) and is skipped.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    lines = raw.split(b"\n")[:-1]  # the piece after the last newline is not a whole line yet
    try:
        # a line that is not UTF-8 raises UnicodeDecodeError, a ValueError like JSONDecodeError
        return [EpochMetrics.from_dict(json.loads(line.decode("utf-8"))) for line in lines if line.strip()]
    except (ValueError, TypeError) as err:
        raise UserError(f"{path}: not a metrics file ({err})") from None


@dataclass(frozen=True)
class TrainResult:
    """The outcome of a finished run, as written to result.json."""

    epochs: int
    best_epoch: int  # the epoch with the highest val_acc
    best_val_acc: float
    final_train_loss: float
    final_train_acc: float
    final_val_loss: float
    final_val_acc: float
    parameters: int  # trainable parameters of the model
    train_seconds: float  # sum of epoch_seconds over all epochs, resumed ones included
    test_loss: float | None = None  # of the final weights
    test_acc: float | None = None
    test_loss_best_val: float | None = None  # of the best validation epoch's weights (best.pt)
    test_acc_best_val: float | None = None

    @classmethod
    def from_history(cls, history: list[EpochMetrics], *, parameters: int) -> TrainResult:
        best = max(history, key=lambda record: record.val_acc)
        last = history[-1]
        return cls(
            epochs=last.epoch,
            best_epoch=best.epoch,
            best_val_acc=best.val_acc,
            final_train_loss=last.train_loss,
            final_train_acc=last.train_acc,
            final_val_loss=last.val_loss,
            final_val_acc=last.val_acc,
            parameters=parameters,
            train_seconds=sum(record.epoch_seconds for record in history),
            test_loss=last.test_loss,
            test_acc=last.test_acc,
            test_loss_best_val=last.test_loss_best_val,
            test_acc_best_val=last.test_acc_best_val,
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> TrainResult:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as err:
            raise UserError(f"{path}: not a result file ({err}); delete it to finish the run again") from None
