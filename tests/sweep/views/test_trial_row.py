"""One trial's row: a running trial's epochs and best come from its metrics file, by one rule, even when
no launcher reports them (issue 34: status's `best` lagged its `epochs`)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from sweep.commands.status import trial_line
from sweep.store import records
from sweep.views.trial_row import trial_row


def test_a_running_trials_best_is_the_best_of_its_metrics_file_beyond_the_reported_values(
    tmp_path: Path,
) -> None:
    study = optuna.create_study(direction="maximize")
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.0, 1.0)})
    trial.report(0.30, 1)  # the launcher reported epoch 1, then stopped reporting
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    epochs = [(1, 0.30), (2, 0.70), (3, 0.55)]  # the job went on logging
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps({"epoch": epoch, "val_acc": acc}) + "\n" for epoch, acc in epochs)
    )
    (run_dir / "config.json").write_text(json.dumps({"epochs": 5}))
    records.write(trial, executor="slurm", job_id="9", run_dir=run_dir)
    row = trial_row(study.trials[0], "val_acc", "maximize")
    assert (row.state, row.epochs_done, row.epochs, row.best, row.last) == ("RUNNING", 3, 5, 0.70, 0.55)
    assert "  epochs 3/5  best 0.7000  job 9" in trial_line(row)
