"""What a run reports: EpochMetrics (a line of metrics.jsonl) and TrainResult (result.json), and the
metrics.jsonl format itself, which every program sweep runs writes and the launcher, `sweep status` and
the report read.

metrics.jsonl holds one JSON object per finished epoch: an integer `epoch` (from 1) and numbers for the
metrics. A line for an epoch seen before replaces it (a program resumed from an older checkpoint logs
its epochs again); a reader skips a line that is not such an object (a half-written last line, a foreign
file): one bad line must not stop a launcher or hide a trial. The built-in trainer's lines are
EpochMetrics, read strictly by `read_metrics`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import UserError
from trainer.files import append_line, write_atomic

TEST_KEYS = ("test_loss", "test_acc", "test_loss_best_val", "test_acc_best_val")
Epoch = dict[str, float]  # metric -> value, with "epoch": one line of any program's metrics.jsonl


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


# -- metrics.jsonl of any program -------------------------------------------------------------------------


def read_epochs(path: Path) -> list[Epoch]:
    """The epochs of a metrics file in epoch order, each with its numeric metrics; [] when it is missing."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return []
    by_epoch: dict[int, Epoch] = {}
    for line in text.splitlines():
        epoch, data = _parsed(line)
        if epoch is None or data is None:
            continue
        by_epoch[epoch] = {
            key: float(value)
            for key, value in data.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def metric_values(history: list[Epoch], metric: str) -> list[tuple[int, float]]:
    """(epoch, value) of each epoch that logged `metric` as a finite number."""
    return [(int(e["epoch"]), e[metric]) for e in history if metric in e and math.isfinite(e[metric])]


def write_epoch(path: Path, line: dict[str, Any]) -> None:
    """Add one epoch's line (a dict with its `epoch`) to a metrics file. A line for an epoch already
    there (a run resumed from a checkpoint taken before it) replaces it and drops the later ones (the
    lost run's), so an epoch is never doubled."""
    epoch, text = int(line["epoch"]), json.dumps(line)
    try:
        lines = [old for old in Path(path).read_text().splitlines() if old.strip()]
    except FileNotFoundError:
        lines = []
    if all((_parsed(old)[0] or 0) < epoch for old in lines):
        append_line(path, text)  # the usual case: a new epoch goes at the end
        return
    kept = [old for old in lines if (_parsed(old)[0] or 0) < epoch]
    write_atomic(path, "".join(old + "\n" for old in kept) + text + "\n")


def write_epochs(path: Path, lines: list[dict[str, Any]]) -> None:
    """Make a metrics file hold exactly these epochs' lines (what a checkpoint says was done)."""
    write_atomic(path, "".join(json.dumps(line) + "\n" for line in lines))


def _parsed(line: str) -> tuple[int | None, dict[str, Any] | None]:
    """A line's epoch and object; (None, None) for a line that is not an epoch's object."""
    try:
        data = json.loads(line)
    except ValueError:
        return None, None
    epoch = data.get("epoch") if isinstance(data, dict) else None
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        return None, None
    return epoch, data
