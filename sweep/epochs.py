"""A run's `metrics.jsonl` as the launcher, `sweep status` and the report read it, whatever program wrote it.

One JSON object per finished epoch: an integer `epoch` (from 1) and numbers for the metrics. A line for
an epoch seen before replaces it (a program resumed from an older checkpoint logs its epochs again),
and a line that is not such an object (a half-written last line, a foreign file) is skipped: one bad
line must not stop a launcher or hide a trial.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

Epoch = dict[str, float]  # metric -> value, with "epoch"


def read_epochs(path: Path) -> list[Epoch]:
    """The epochs of a metrics file in epoch order, each with its numeric metrics; [] when it is missing."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return []
    by_epoch: dict[int, Epoch] = {}
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        epoch = data.get("epoch") if isinstance(data, dict) else None
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
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


def best(history: list[Epoch], metric: str, direction: str) -> float | None:
    """The best value of `metric` over the epochs (highest for maximize); None when none was logged."""
    values = [value for _, value in metric_values(history, metric)]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)
