"""`sweep status`: one line per trial of the stored studies, then each study's totals.

`trial_rows` collects plain data from the storage and the run dirs; `render` only formats it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from trainer.metrics import read_metrics
from trainer.paths import RunPaths


@dataclass(frozen=True)
class TrialRow:
    """What `sweep status` shows of one trial."""

    number: int
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    params: dict[str, Any]
    epochs_done: int  # lines in the run's metrics.jsonl (or epochs reported, without a run dir)
    epochs: int | None  # the run's configured epochs, from its config.json
    best: float | None  # the trial's value; for a running or pruned trial, its best reported epoch
    job_id: str | None
    executor: str | None = None  # slurm | local | debug
    job_state: str | None = None  # what the scheduler says of a RUNNING trial's job (sweep.slurm)
    run_dir: str | None = None
    launcher: str | None = None  # host:pid of the launcher that watches (or last watched) the trial


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    """One row per trial of `study`, in trial order."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return [_row(trial, maximize) for trial in study.get_trials(deepcopy=False)]


def _row(trial: FrozenTrial, maximize: bool) -> TrialRow:
    run_dir = trial.user_attrs.get("run_dir")
    epochs_done, epochs = len(trial.intermediate_values), None
    if run_dir:
        paths = RunPaths(Path(run_dir))
        epochs_done = len(read_metrics(paths.metrics)) or epochs_done
        epochs = _configured_epochs(paths.config)
    best = trial.value
    if best is None and trial.intermediate_values:
        values = trial.intermediate_values.values()
        best = max(values) if maximize else min(values)
    job_id = trial.user_attrs.get("job_id")
    return TrialRow(
        number=trial.number,
        state=trial.state.name,
        params=dict(trial.params),
        epochs_done=epochs_done,
        epochs=epochs,
        best=best,
        job_id=None if job_id is None else str(job_id),
        executor=trial.user_attrs.get("executor"),
        run_dir=run_dir,
        launcher=trial.user_attrs.get("launcher"),
    )


def _configured_epochs(path: Path) -> int | None:
    try:
        epochs = json.loads(path.read_text()).get("epochs")
    except (OSError, ValueError, AttributeError):
        return None
    return epochs if isinstance(epochs, int) else None


def render(name: str, metric: str, rows: list[TrialRow]) -> list[str]:
    """The lines of one study: a header, one line per trial, and the totals."""
    lines = [f"study {name} ({metric})"]
    for row in rows:
        params = params_text(row.params) or "-"
        epochs = f"{row.epochs_done}/{row.epochs}" if row.epochs is not None else str(row.epochs_done)
        best = "-" if row.best is None else f"{row.best:.4f}"
        job = (row.job_id or "-") + (f" ({row.job_state})" if row.job_state else "")
        lines.append(f"  #{row.number:<3} {row.state:<8} {params}  epochs {epochs}  best {best}  job {job}")
    counts = Counter(row.state for row in rows)
    totals = ", ".join(f"{count} {state.lower()}" for state, count in sorted(counts.items()))
    lines.append(f"  {len(rows)} trials: {totals or 'none'}")
    return lines


def params_text(params: dict[str, Any]) -> str:
    """`key=value` pairs, floats in their shortest form (lr=0.05 weight_decay=0.0005)."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
