"""Synchronous successive halving (`[study] pruner = "synchronous_halving"`): trials pause at each rung,
the best third go on from where they stopped, the rest end PRUNED with their rung's value."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.commands.status import render, trial_rows
from sweep.errors import StudyStopped, SweepError
from sweep.executors import make_executor
from sweep.launcher import launch
from sweep.launcher.loop import Launcher
from sweep.launcher.rungs import closable, decide, next_stop, rung_epochs
from sweep.store.records import TrialRecord
from sweep.store.storage import default_url, open_storage, open_study
from sweep.study.parse import load_toml
from sweep.study.plan import make_pruner, make_sampler
from tests.sweep.conftest import new_study
from tests.sweep.executors.test_slurm import slurm_cluster, study_jobs  # noqa: F401 (fixtures)
from tests.sweep.launcher_rungs_job import RungJob
from tests.sweep.store.test_claims import postgres_databases  # noqa: F401 (a fixture)
from trainer.metrics import read_epochs

LRS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def _study_file(tmp_path: Path, *, lrs: list[float] = LRS, repeats: int = 1, epochs: int = 9) -> Path:
    path = tmp_path / "halve.toml"
    path.write_text(
        f"""[study]
name = "halve"
sampler = "grid"
pruner = "synchronous_halving"
pruner_warmup_epochs = 1
repeats = {repeats}
[train]
epochs = {epochs}
dataset = "fake"
device = "cpu"
[space]
lr = {lrs}
[resources]
gpus = 0
"""
    )
    return path


def _trials(results: Path) -> dict[float, list[optuna.trial.FrozenTrial]]:
    study = optuna.load_study(study_name="halve", storage=default_url(results))
    by_lr: dict[float, list[optuna.trial.FrozenTrial]] = {}
    for trial in study.get_trials():
        by_lr.setdefault(trial.params["lr"], []).append(trial)
    return by_lr


def _run_dir(trial: optuna.trial.FrozenTrial) -> Path:
    run_dir = TrialRecord.of(trial).run_dir
    assert run_dir is not None
    return run_dir


def test_rungs_are_at_warmup_times_three_to_the_k_below_the_trials_epochs() -> None:
    assert rung_epochs(1, 9) == [1, 3]
    assert rung_epochs(2, 20) == [2, 6, 18]
    assert rung_epochs(0, 10) == [1, 3, 9]  # warmup 0 is 1, as for successive_halving
    assert rung_epochs(3, 3) == []
    assert [next_stop(2, 20, after) for after in (0, 2, 6, 18)] == [2, 6, 18, 20]


def test_a_grid_pauses_at_each_rung_and_only_the_best_third_goes_on(tmp_path: Path) -> None:
    lines: list[str] = []
    spec = load_toml(_study_file(tmp_path))
    launch(spec, results_dir=tmp_path / "results", executor="debug", job=RungJob(), out=lines.append)
    by_lr = _trials(tmp_path / "results")
    epochs_run = {
        lr: len(read_epochs(TrialRecord.of(t).run_dir / "metrics.jsonl")) for lr, (t,) in by_lr.items()
    }
    # 9 configurations to epoch 1; the best 3 (lr 0.7-0.9) to epoch 3; the best one (0.9) to its end
    assert epochs_run == {0.1: 1, 0.2: 1, 0.3: 1, 0.4: 1, 0.5: 1, 0.6: 1, 0.7: 3, 0.8: 3, 0.9: 9}
    states = {lr: t.state for lr, (t,) in by_lr.items()}
    assert states[0.9] == TrialState.COMPLETE
    assert {lr for lr, state in states.items() if state == TrialState.PRUNED} == set(LRS) - {0.9}
    # a pruned trial keeps its rung's value; the winner's is its best epoch
    assert by_lr[0.4][0].value == pytest.approx(0.04)
    assert by_lr[0.8][0].value == pytest.approx(0.24)
    assert by_lr[0.9][0].value == pytest.approx(0.81)
    # each segment was a start of the same trial and run dir, none a new trial or a counted resubmission
    starts = {lr: int((_run_dir(t) / "starts").read_text()) for lr, (t,) in by_lr.items()}
    assert starts == {**dict.fromkeys(LRS[:6], 1), 0.7: 2, 0.8: 2, 0.9: 3}
    assert all(TrialRecord.of(t).submissions == 1 for (t,) in by_lr.values())
    assert sum("paused at epoch 1/9" in line for line in lines) == 9
    assert "rung epoch 1: 3 of 9 trials go on, the rest pruned" in lines
    assert "rung epoch 3: 1 of 3 trials go on, the rest pruned" in lines


def test_a_configurations_rung_value_is_the_mean_over_its_seeds(tmp_path: Path) -> None:
    spec = load_toml(_study_file(tmp_path, lrs=[0.1, 0.2, 0.3], repeats=2, epochs=3))
    launch(spec, results_dir=tmp_path / "results", executor="debug", job=RungJob(), out=lambda _: None)
    by_lr = _trials(tmp_path / "results")
    # three configurations at rung 1: the best one (both its seeds) goes on to epoch 3
    assert {lr: sorted(t.state.name for t in trials) for lr, trials in by_lr.items()} == {
        0.1: ["PRUNED", "PRUNED"],
        0.2: ["PRUNED", "PRUNED"],
        0.3: ["COMPLETE", "COMPLETE"],
    }


def test_ties_at_a_rung_go_to_more_finished_runs_then_the_lower_configuration(tmp_path: Path) -> None:
    spec = load_toml(_study_file(tmp_path, lrs=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], epochs=9))
    (tmp_path / "results").mkdir()
    study = new_study(spec, tmp_path / "results")
    for config, value in enumerate([0.5, 0.9, 0.9, 0.1, 0.9, 0.2]):
        trial = study.ask()
        trial.set_user_attr("config", config)
        trial.set_user_attr("repeat", 0)
        trial.set_user_attr("rung", 1)
        trial.set_user_attr("paused", 1)
        trial.report(value, 1)
    trials = study.get_trials()
    assert closable(trials, 1, search_left=False)
    assert not closable(trials, 1, search_left=True)
    decision = decide(trials, 1, "maximize")
    # 6 configurations: the best 2; three tie at 0.9: the lower numbers, 1 and 2, go on
    assert decision.promoted == (1, 2) and decision.pruned == (0, 3, 4, 5)
    assert decide(trials, 1, "minimize").promoted == (3, 5)


def test_a_running_trial_on_its_way_to_the_rung_keeps_it_open(tmp_path: Path) -> None:
    spec = load_toml(_study_file(tmp_path, lrs=[0.1, 0.2]))
    (tmp_path / "results").mkdir()
    study = new_study(spec, tmp_path / "results")
    for config, paused in enumerate([1, 0]):
        trial = study.ask()
        for key, value in (("config", config), ("repeat", 0), ("rung", 1), ("paused", paused)):
            trial.set_user_attr(key, value)
    assert not closable(study.get_trials(), 1, search_left=False)


def _restarted_mid_rung(tmp_path: Path, url: str) -> None:
    """Every configuration to its first rung under one launcher; the rung closed and the study finished
    by a second one (the first gone, as after a crash or a requeue), from what the database holds."""
    spec = load_toml(_study_file(tmp_path))
    results = tmp_path / "results"
    results.mkdir()
    storage = open_storage(url, create=True)
    study = open_study(
        spec.name,
        storage,
        direction=spec.direction,
        sampler=make_sampler(spec),
        pruner=make_pruner(spec),
        url=url,
    )
    executor = make_executor("debug", spec.resources)
    first = Launcher(spec, study, executor, results_dir=results, job=RungJob(), out=lambda _: None)
    first.reconcile()
    for _ in range(len(LRS)):  # every configuration to its first rung; the rung is not closed yet
        first.fill()
        for item in list(first.running.values()):
            first.poll(item)
    assert first.rungs is not None and len(first.rungs.paused) == len(LRS) and not first.running
    rows = trial_rows(study)
    assert all(row.state == "RUNNING" and row.paused == 1 for row in rows)
    assert "paused at epoch 1 (synchronous halving" in render("halve", "val_acc", rows)[1]
    assert rows[0].note == "paused at epoch 1"  # the live view's note
    study = optuna.load_study(study_name=spec.name, storage=open_storage(url, create=False))
    second = Launcher(
        spec, study, executor, results_dir=results, job=RungJob(), out=lambda _: None,
        predecessors=frozenset({first.id}),
    )  # fmt: skip
    second.run()
    trials = {t.params["lr"]: t for t in study.get_trials()}
    assert {lr: t.state.name for lr, t in trials.items()} == {
        **dict.fromkeys(LRS[:8], "PRUNED"),
        0.9: "COMPLETE",
    }
    assert len(read_epochs(_run_dir(trials[0.9]) / "metrics.jsonl")) == 9
    assert int((_run_dir(trials[0.8]) / "starts").read_text()) == 2  # each segment started once


def test_a_launcher_started_again_mid_rung_keeps_the_rungs_on_sqlite(tmp_path: Path) -> None:
    _restarted_mid_rung(tmp_path, default_url(tmp_path / "results"))


@pytest.mark.slow
def test_a_launcher_started_again_mid_rung_keeps_the_rungs_on_postgresql(
    tmp_path: Path,
    postgres_databases: list[str],  # noqa: F811
) -> None:
    _restarted_mid_rung(tmp_path, postgres_databases[0])


def test_confirmation_trials_run_whole_after_a_halved_search(tmp_path: Path) -> None:
    path = _study_file(tmp_path, lrs=[0.1, 0.2, 0.3], epochs=3)
    path.write_text(
        path.read_text().replace("repeats = 1\n", "repeats = 1\nconfirm_top = 1\nconfirm_repeats = 1\n")
    )
    launch(
        load_toml(path), results_dir=tmp_path / "results", executor="debug", job=RungJob(), out=lambda _: None
    )
    (confirm,) = [
        t for lrs in _trials(tmp_path / "results").values() for t in lrs if TrialRecord.of(t).confirm
    ]
    assert confirm.params == {"lr": 0.3} and confirm.state == TrialState.COMPLETE
    assert len(read_epochs(_run_dir(confirm) / "metrics.jsonl")) == 3
    assert int((_run_dir(confirm) / "starts").read_text()) == 1  # no pause: one job to its end


PROGRAM = """\
import json, os, sys
from sweep import log_epoch
run = os.environ["SWEEP_RUN_DIR"]
state = os.path.join(run, "state.json")
start = json.load(open(state))["epoch"] if os.path.exists(state) else 0
with open(os.path.join(run, "starts"), "a") as handle:
    handle.write(f"{start}\\n")
for epoch in range(start + 1, int(sys.argv[2]) + 1):
    with open(state, "w") as handle:  # the checkpoint, saved before the epoch is logged
        json.dump({"epoch": epoch}, handle)
    log_epoch(epoch, val_acc=float(sys.argv[1]) * epoch)
"""


def _program_study(tmp_path: Path, name: str, extra: str = "") -> Path:
    (tmp_path / "prog.py").write_text(PROGRAM)
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""[study]
name = "{name}"
metric = "val_acc"
direction = "maximize"
sampler = "grid"
pruner = "synchronous_halving"
pruner_warmup_epochs = 1
[train]
epochs = 4
[space]
value = [0.1, 0.2, 0.3]
[program]
command = ["{sys.executable}", "{tmp_path / "prog.py"}", "{{value}}", "{{epochs}}"]
[resources]
gpus = 0
cpus = 1
{extra}"""
    )
    return path


def _check_halved(results: Path, name: str) -> None:
    study = optuna.load_study(study_name=name, storage=default_url(results))
    trials = {t.params["value"]: t for t in study.get_trials()}
    assert {value: t.state.name for value, t in trials.items()} == {
        0.1: "PRUNED",
        0.2: "PRUNED",
        0.3: "COMPLETE",
    }
    # the winner's program started three times (rungs 1 and 3, then to 4), each from its own checkpoint
    assert (_run_dir(trials[0.3]) / "starts").read_text().split() == ["0", "1", "3"]
    assert [int(e["epoch"]) for e in read_epochs(_run_dir(trials[0.3]) / "metrics.jsonl")] == [1, 2, 3, 4]
    assert (_run_dir(trials[0.1]) / "starts").read_text().split() == ["0"]


@pytest.mark.slow
def test_a_log_epoch_program_pauses_and_resumes_under_the_local_executor(tmp_path: Path) -> None:
    path = _program_study(tmp_path, "local")
    results = tmp_path / "results"
    launch(load_toml(path), results_dir=results, executor="local", parallel=3, out=lambda _: None)
    _check_halved(results, "local")


@pytest.mark.slow
def test_a_log_epoch_program_pauses_and_resumes_under_slurm(
    tmp_path: Path,
    study_jobs: list[str],  # noqa: F811
) -> None:
    study_jobs.append("halveslurm")
    path = _program_study(tmp_path, "halveslurm", "[waits]\nslurm_query_s = 1\n")
    results = tmp_path / "results"
    launch(load_toml(path), results_dir=results, executor="slurm", parallel=3, out=lambda _: None)
    _check_halved(results, "halveslurm")


def test_synchronous_halving_needs_a_grid(tmp_path: Path) -> None:
    path = tmp_path / "tpe.toml"
    path.write_text(
        '[study]\nsampler = "tpe"\nn_trials = 4\npruner = "synchronous_halving"\n'
        "[space]\nlr = {low = 0.01, high = 0.1}\n"
    )
    with pytest.raises(SweepError) as err:
        load_toml(path)
    assert "[study] key 'pruner'" in str(err.value)
    assert 'use pruner = "successive_halving" there' in str(err.value)


def test_a_program_that_starts_over_after_a_pause_stops_the_launch_with_one_line(tmp_path: Path) -> None:
    spec = load_toml(_study_file(tmp_path, lrs=[0.1, 0.2, 0.3]))
    with pytest.raises(StudyStopped) as err:
        launch(
            spec,
            results_dir=tmp_path / "results",
            executor="debug",
            job=RungJob(restart_at_one=True),
            out=lambda _: None,
        )
    message = str(err.value)
    assert "trial 2 was resumed after epoch 1 but logged epoch 1 again" in message
    assert "SWEEP_RUN_DIR" in message and 'pruner = "successive_halving"' in message
