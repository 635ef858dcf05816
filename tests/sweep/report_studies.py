"""Studies for report tests: real SQLite storage, trials added through Optuna's API, hand-written metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState, create_trial

from sweep.store import storage

EPOCH_SECONDS = 600.0


def epoch(n: int, tl: float, ta: float, vl: float, va: float, **extra: float) -> dict[str, Any]:
    """One metrics.jsonl line: train loss/acc, val loss/acc, and test_loss/test_acc when given."""
    line: dict[str, Any] = {
        "epoch": n,
        "train_loss": tl,
        "train_acc": ta,
        "val_loss": vl,
        "val_acc": va,
        "lr": 0.1,
        "epoch_seconds": extra.pop("seconds", EPOCH_SECONDS),
        "images_per_second": 1000.0,
    }
    line.update(extra)
    return line


@dataclass(frozen=True)
class Trial:
    """A trial to store: its params, state, and either metrics lines (a run dir) or intermediate values."""

    params: dict[str, Any]
    state: TrialState = TrialState.COMPLETE
    epochs: list[dict[str, Any]] = field(default_factory=list)
    intermediate: dict[int, float] = field(default_factory=dict)
    repeat: int = 0


def make_study(
    results_dir: Path,
    name: str,
    trials: list[Trial],
    *,
    direction: str = "maximize",
    metric: str = "val_acc",
    distributions: dict[str, BaseDistribution] | None = None,
) -> optuna.Study:
    """Create `name` in results_dir/sweep.db with `trials`, each with a run dir like the launcher's."""
    results_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name, storage=storage.default_url(results_dir), direction=direction
    )
    study.set_user_attr("metric", metric)
    if distributions is None:
        choices: dict[str, list[Any]] = {}
        for trial in trials:
            for key, value in trial.params.items():
                if value not in choices.setdefault(key, []):
                    choices[key].append(value)
        distributions = {key: CategoricalDistribution(values) for key, values in choices.items()}
    for number, trial in enumerate(trials):
        study.add_trial(_frozen(results_dir / "runs" / name / str(number), trial, distributions))
    return study


def _frozen(
    run_dir: Path, trial: Trial, distributions: dict[str, BaseDistribution]
) -> optuna.trial.FrozenTrial:
    attrs: dict[str, Any] = {"repeat": trial.repeat, "executor": "debug"}
    intermediate = dict(trial.intermediate)
    if trial.epochs:
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in trial.epochs))
        attrs["run_dir"] = str(run_dir)
        intermediate = {line["epoch"]: line["val_acc"] for line in trial.epochs}
    value = max(intermediate.values()) if trial.state == TrialState.COMPLETE else None
    return create_trial(
        state=trial.state,
        value=value,
        params=trial.params,
        distributions={key: distributions[key] for key in trial.params},
        user_attrs=attrs,
        intermediate_values=intermediate,
    )
