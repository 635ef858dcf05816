"""The LCBench surrogate of YAHPO Gym read with onnxruntime alone: learning curves of a grid, in one query.

The folder holds YAHPO's `model.onnx` and `encoding.json` (see its SOURCE.txt). The model takes the task
id (integer-encoded) and the raw values of epoch, batch_size, learning_rate, momentum, weight_decay,
num_layers, max_units, max_dropout, and predicts time (seconds of training so far), val_accuracy (%),
and four more metrics. This is what yahpo-gym's BenchmarkSet.objective_function does, without its
ConfigSpace and numpy pins (onnxruntime is the `bench` extra).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.errors import SweepError

EPOCHS = 52  # the surrogate's epochs, 1 to 52
CONT_NAMES = (  # the model's continuous inputs, in its order
    "epoch",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "num_layers",
    "max_units",
    "max_dropout",
)
OUTPUTS = ("time", "val_accuracy")  # the first two of the model's six outputs


@dataclass(frozen=True)
class Config:
    """One MLP configuration of LCBench's space."""

    batch_size: int
    learning_rate: float
    max_units: int
    num_layers: int
    max_dropout: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4

    @property
    def key(self) -> str:
        """The name the replay program finds the configuration's curve under."""
        return f"{self.learning_rate:g}/{self.batch_size}/{self.max_units}/{self.num_layers}"


@dataclass(frozen=True)
class Curve:
    """A configuration's predicted epochs 1..52: training seconds so far (never falling) and validation
    accuracy (%)."""

    time: tuple[float, ...]
    val_accuracy: tuple[float, ...]

    def to_dict(self) -> dict[str, list[float]]:
        return {"time": list(self.time), "val_accuracy": list(self.val_accuracy)}


def curves(data_dir: Path, task: str, configs: list[Config]) -> dict[str, Curve]:
    """Every configuration's curve on OpenML task `task`, by `Config.key`, in one batch of the model."""
    try:
        import numpy as np
        import onnxruntime
    except ImportError as err:
        raise SweepError(
            f"reading the surrogate needs onnxruntime ({err}); pip install -e '.[bench]'"
        ) from None
    folder = Path(data_dir)
    try:
        encoding = json.loads((folder / "encoding.json").read_text())["OpenML_task_id"]
    except (OSError, ValueError, KeyError) as err:
        raise SweepError(f"{folder / 'encoding.json'}: cannot read the task encoding ({err})") from None
    if task not in encoding or task == "#na#":
        raise SweepError(
            f"--tasks: {task} is not an LCBench task; the tasks are in {folder / 'encoding.json'}"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # a few thousand rows: threads cost more than they save
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options)
    rows: list[list[float]] = []
    for config in configs:
        values: dict[str, Any] = {name: getattr(config, name, 0) for name in CONT_NAMES}
        for epoch in range(1, EPOCHS + 1):
            rows.append([float(epoch if name == "epoch" else values[name]) for name in CONT_NAMES])
    x_cont = np.asarray(rows, dtype=np.float32)
    x_cat = np.full((len(rows), 1), encoding[task], dtype=np.int32)
    inputs = session.get_inputs()
    predicted = session.run(None, {inputs[0].name: x_cat, inputs[1].name: x_cont})[0]
    found: dict[str, Curve] = {}
    for index, config in enumerate(configs):
        block = predicted[index * EPOCHS : (index + 1) * EPOCHS]
        found[config.key] = Curve(
            # seconds so far cannot fall, but the model's predictions dip here and there (168 epochs of
            # the 81 x 52 on task 3945): a running maximum
            time=tuple(itertools.accumulate((float(v) for v in block[:, 0]), max)),
            val_accuracy=tuple(float(v) for v in block[:, 1]),
        )
    return found
