"""Pruning through the launcher and a real local job: the pruned trial's program stops at once."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep import procs
from sweep.launcher import launch
from sweep.launcher.loop import READ_EVERY_S
from sweep.store.records import TrialRecord
from sweep.store.storage import default_url
from sweep.study import load_study
from sweep.study.plan import make_pruner
from tests.conftest import deadline
from tests.sweep.conftest import wait_for
from tests.sweep.executors.test_program import start_stubborn
from trainer.metrics import read_epochs

# Logs an epoch every 0.2 s with its wall clock; at SIGTERM writes the time it was stopped and exits.
PROGRAM = """\
import json, os, signal, sys, time
run = os.environ["SWEEP_RUN_DIR"]
value = float(sys.argv[1])
def stopped(signum, frame):
    with open(os.path.join(run, "stopped"), "w") as handle:
        handle.write(repr(time.time()))
    sys.exit(143)
signal.signal(signal.SIGTERM, stopped)
for epoch in range(1, 101):
    time.sleep(0.2)
    with open(os.path.join(run, "metrics.jsonl"), "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "val_acc": value, "at": time.time()}) + "\\n")
"""


def test_a_pruned_trials_job_stops_within_one_poll_interval(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    study_file = tmp_path / "stop.toml"
    study_file.write_text(
        f"""[study]
name = "stop"
metric = "val_acc"
direction = "maximize"
sampler = "grid"
[train]
epochs = 100
[space]
value = [0.1]
[program]
command = ["{sys.executable}", "prog.py", "{{value}}"]
stop_grace_s = 5
[resources]
gpus = 0
cpus = 1
"""
    )
    spec = load_study(study_file)
    results = tmp_path / "results"
    # prunes a trial whose val_acc is under 0.5 at its second epoch
    launch(
        spec,
        results_dir=results,
        executor="local",
        pruner=optuna.pruners.ThresholdPruner(lower=0.5, n_warmup_steps=2),
        out=lambda line: None,
    )
    (trial,) = optuna.load_study(study_name="stop", storage=default_url(results)).get_trials()
    assert trial.state == TrialState.PRUNED
    run_dir = TrialRecord.of(trial).run_dir
    assert run_dir is not None and trial.datetime_complete is not None
    decided = trial.datetime_complete.timestamp()  # told right after the job was sent SIGTERM
    # the launch may end before the program has run its handler (a busy machine schedules it late);
    # without the SIGTERM it would train on for 20 s and never write the file
    wait_for(lambda: (run_dir / "stopped").exists(), timeout=deadline(10), what="the program to stop")
    stopped = float((run_dir / "stopped").read_text())
    assert abs(stopped - decided) <= deadline(2 * READ_EVERY_S)  # sent at once, not after a grace
    epochs = read_epochs(run_dir / "metrics.jsonl")
    assert max(trial.intermediate_values) == 2 and len(epochs) < 100
    assert all(line["at"] <= stopped for line in epochs)  # nothing was trained after the stop


def test_hyperband_and_successive_halving_rungs_follow_the_study(tmp_path: Path) -> None:
    """Hyperband's maximum is the study's epochs, not "auto" (which prunes nothing until a trial has
    run to its end); successive halving's first rung is the warm-up."""
    path = tmp_path / "hb.toml"
    body = '[study]\nname = "hb"\nsampler = "grid"\npruner = "{pruner}"\npruner_warmup_epochs = 2\n'
    body += "[train]\nepochs = 18\n[space]\nlr = [0.1, 0.2]\n[resources]\ngpus = 0\ncpus = 1\n"
    path.write_text(body.format(pruner="hyperband"))
    hyperband = make_pruner(load_study(path))
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._max_resource == 18 and hyperband._min_resource == 2
    path.write_text(body.format(pruner="successive_halving"))
    halving = make_pruner(load_study(path))
    assert isinstance(halving, optuna.pruners.SuccessiveHalvingPruner)
    assert halving._min_resource == 2 and halving._reduction_factor == 3
    assert json.dumps(load_study(path).pruner) == '"successive_halving"'


def test_stop_soon_returns_at_once_and_still_kills_a_stubborn_program(tmp_path: Path) -> None:
    """The launcher's prune does not wait for the job to go, yet a program that ignores SIGTERM and
    forks is killed after its stop_grace_s as `cancel` would kill it."""
    job, pgid = start_stubborn(tmp_path)
    started = time.monotonic()
    job.stop_soon()
    assert time.monotonic() - started < 1.0  # the grace alone is 1 s: stop_soon did not wait for it
    assert job.done()
    wait_for(lambda: procs.group_members(pgid) == [], timeout=deadline(20), what="the program's group to go")


# Logs with sweep.log_epoch an epoch every 0.05 s: at a rung it waits for the launcher's word.
WAITING = """\
import sys, time
from sweep import log_epoch
for epoch in range(1, int(sys.argv[2]) + 1):
    time.sleep(0.05)
    log_epoch(epoch, val_acc=float(sys.argv[1]), at=time.time())
"""


class SlowHalving(optuna.pruners.SuccessiveHalvingPruner):
    """Successive halving that takes 0.5 s to decide at a rung, as a launcher sharing busy cores did
    (issue 33: 0.24-1.09 s from a rung epoch's line to its prune)."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if trial.last_step in (1, 3, 9):
            time.sleep(0.5)
        return super().prune(study, trial)


def _late_epochs(tmp_path: Path, name: str, wait_s: str) -> tuple[dict[float, str], int]:
    """A grid of 0.9, 0.1, 0.2 one after another, rungs at 1, 3 and 9 of 20 epochs: the trials' states,
    and the epochs the pruned ones logged past their rung."""
    (tmp_path / "waiting.py").write_text(WAITING)
    study_file = tmp_path / f"{name}.toml"
    study_file.write_text(
        f"""[study]
name = "{name}"
metric = "val_acc"
direction = "maximize"
sampler = "grid"
pruner = "successive_halving"
pruner_warmup_epochs = 1
[train]
epochs = 20
[space]
value = [0.9, 0.1, 0.2]
[program]
command = ["{sys.executable}", "{tmp_path / "waiting.py"}", "{{value}}", "{{epochs}}"]
env = {{ SWEEP_RUNG_WAIT_S = "{wait_s}" }}
stop_grace_s = 5
[resources]
gpus = 0
cpus = 1
"""
    )
    results = tmp_path / name
    pruner = SlowHalving(min_resource=1, reduction_factor=3)
    launch(load_study(study_file), results_dir=results, executor="local", pruner=pruner, out=lambda _: None)
    trials = optuna.load_study(study_name=name, storage=default_url(results)).get_trials()
    late = 0
    for trial in trials:
        run_dir = TrialRecord.of(trial).run_dir
        assert run_dir is not None
        if trial.state == TrialState.PRUNED:
            rung = max(trial.intermediate_values)
            late += sum(1 for line in read_epochs(run_dir / "metrics.jsonl") if line["epoch"] > rung)
    return {trial.params["value"]: trial.state.name for trial in trials}, late


@pytest.mark.slow
def test_a_program_waits_at_its_rung_so_a_pruned_trial_trains_no_epoch_past_it(tmp_path: Path) -> None:
    """The same launch without the wait (SWEEP_RUNG_WAIT_S = 0: as before the rung word) trains the
    pruned trials on for the half second the pruner takes; with it, not one epoch."""
    states = {0.9: "COMPLETE", 0.1: "PRUNED", 0.2: "PRUNED"}
    assert _late_epochs(tmp_path, "waits", "60") == (states, 0)
    without, late = _late_epochs(tmp_path, "nowait", "0")
    assert without == states and late > 0
