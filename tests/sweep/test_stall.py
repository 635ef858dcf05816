"""A trial whose program hangs after its last epoch is said stalled, once, and `sweep status` shows it."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep import records
from sweep.launcher import launch
from sweep.records import TrialRecord
from sweep.status import render, trial_rows
from sweep.storage import default_url
from sweep.study import load_study

# Three epochs 0.2 s apart, then hangs for 3 s before it exits (a process that does not end).
HANGS = """\
import json, os, time
for epoch in (1, 2, 3):
    time.sleep(0.2)
    with open(os.path.join(os.environ["SWEEP_RUN_DIR"], "metrics.jsonl"), "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "val_acc": 0.1 * epoch}) + "\\n")
time.sleep(3)
"""


def test_a_program_that_hangs_after_its_last_epoch_is_said_stalled_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sweep.launcher.stall.MIN_STALL_S", 1.0)  # 3 x 0.2 s is under it: 1 s it is
    (tmp_path / "hangs.py").write_text(HANGS)
    study_file = tmp_path / "hang.toml"
    study_file.write_text(
        f'[study]\nname = "hang"\nsampler = "grid"\n[train]\nepochs = 3\n[space]\nlr = [0.1]\n'
        f'[program]\ncommand = ["{sys.executable}", "hangs.py"]\n[resources]\ngpus = 0\ncpus = 1\n'
    )
    results = tmp_path / "results"
    lines: list[str] = []
    launch(load_study(study_file), results_dir=results, executor="local", poll_s=0.1, out=lines.append)
    stalled = [line for line in lines if "stalled" in line]
    assert len(stalled) == 1, lines  # said once, not at every poll
    assert stalled[0].startswith("trial 0 stalled: no new epoch for ")
    assert "after epoch 3 (3x its median " in stalled[0] and "its job still runs" in stalled[0]
    (trial,) = optuna.load_study(study_name="hang", storage=default_url(results)).get_trials()
    assert trial.state == TrialState.COMPLETE  # a stall is said, nothing is stopped
    assert TrialRecord.of(trial).stalled is not None and "after epoch 3" in str(TrialRecord.of(trial).stalled)


def test_status_shows_a_running_trial_stalled_and_not_once_epochs_come_again(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    trial = study.ask()
    records.write(trial, stalled="no new epoch for 14 min after epoch 3 (3x its median 4 min between epochs)")
    (line,) = [line for line in render("s", "val_acc", trial_rows(study)) if line.lstrip().startswith("#0 ")]
    assert line.endswith(
        "stalled: no new epoch for 14 min after epoch 3 (3x its median 4 min between epochs)"
    )
    records.write(trial, stalled="")  # epochs came again
    assert "stalled" not in " ".join(render("s", "val_acc", trial_rows(study)))
