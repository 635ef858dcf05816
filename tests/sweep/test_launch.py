"""The launcher: whole studies through the debug and local executors, failures, pruning, restarts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from sweep.executors import chosen
from sweep.executors.debug import DebugExecutor
from sweep.launcher import launch
from sweep.launcher.loop import Launcher
from sweep.store.owners import HEARTBEAT_STALE_S, launcher_id
from sweep.store.storage import default_url
from sweep.study import load_study
from sweep.study.plan import dry_run, make_pruner, plan
from sweep.study.spec import best_logged as best
from tests.conftest import deadline
from tests.sweep.conftest import (
    ROOT,
    TINY_TRAIN,
    assert_one_line_error,
    instant_job,
    new_study,
    processes_mentioning,
    run_sweep,
    sweep_cmd,
    sweep_main,
    wait_for,
    write_study,
)
from trainer.data import TEST_FILE, TRAIN_FILES
from trainer.metrics import EpochMetrics, read_metrics

TUNING_POINTS = [
    {"batch_size": 64, "num_workers": 2, "weight_decay": 5e-4},
    {"batch_size": 128, "num_workers": 4, "weight_decay": 5e-4},
    {"batch_size": 256, "num_workers": 2, "weight_decay": 5e-4},
    {"batch_size": 128, "num_workers": 2, "weight_decay": 1e-4},
    {"batch_size": 128, "num_workers": 4, "weight_decay": 1e-4},
    {"batch_size": 256, "num_workers": 4, "weight_decay": 1e-4},
    {"batch_size": 128, "num_workers": 6, "weight_decay": 1e-4},
]


def _stored(results: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=default_url(results))


def _assert_all_complete(results: Path, name: str, count: int) -> list[optuna.trial.FrozenTrial]:
    trials = _stored(results, name).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * count
    for trial in trials:
        run_dir = Path(trial.user_attrs["run_dir"])
        assert run_dir == results / "runs" / name / str(trial.number)
        records = read_metrics(run_dir / "metrics.jsonl")
        assert trial.value == max(record.val_acc for record in records)
        assert sorted(trial.intermediate_values) == [record.epoch for record in records]
        assert (run_dir / "config.json").is_file() and (run_dir / "result.json").is_file()
        assert {"job_id", "run_dir", "executor"} <= set(trial.user_attrs)
    return trials


def hand_claim(study: optuna.Study, config: int, *, launcher: str, stamped: float, repeat: int = 0) -> None:
    """Make the claim of (config, repeat) look held by `launcher`, last stamped at `stamped`."""
    from sweep._compat import rdb_storage, study_id
    from sweep.store.claims import CLAIMS

    with rdb_storage(study).engine.begin() as conn:
        row = (
            (CLAIMS.c.study_id == study_id(study)) & (CLAIMS.c.config == config) & (CLAIMS.c.repeat == repeat)
        )
        assert (
            conn.execute(sa.update(CLAIMS).where(row).values(launcher=launcher, stamped=stamped)).rowcount
            == 1
        )


# -- planning ---------------------------------------------------------------------------------------------


def test_tuning_plan_is_the_seven_points() -> None:
    spec = load_study("tuning")
    planned = plan(spec)
    assert [item.params for item in planned] == TUNING_POINTS
    assert [(item.config, item.repeat) for item in planned] == [(i, 0) for i in range(7)]


def test_tuning_asks_seven_trials_with_exactly_those_params(tmp_path: Path) -> None:
    spec = load_study("tuning")
    study = new_study(spec, tmp_path)
    launcher = Launcher(spec, study, DebugExecutor(), results_dir=tmp_path)
    launcher.reconcile()
    asked = [launcher.ask() for _ in range(8)]
    assert asked[7] is None
    assert [trial.params for trial in asked[:7] if trial is not None] == TUNING_POINTS
    for trial in asked[:7]:
        assert trial is not None
        config = spec.train_config(trial.params)  # the rest is its base's (tests/sweep/test_base.py)
        assert (config.batch_size, config.weight_decay) == (
            trial.params["batch_size"],
            trial.params["weight_decay"],
        )


def test_a_planned_trial_is_stored_as_enqueue_then_ask_would_store_it(tmp_path: Path) -> None:
    # The launcher creates planned trials running in one transaction; Optuna's own way is
    # enqueue_trial then ask. Both must leave the same trial for samplers, pruners and the dashboard.
    spec = load_study("tuning")
    study = new_study(spec, tmp_path)
    launcher = Launcher(spec, study, DebugExecutor(), results_dir=tmp_path)
    launcher.reconcile()
    created = launcher.ask()
    assert created is not None
    reference = optuna.create_study(direction="maximize")
    reference.enqueue_trial(TUNING_POINTS[0], user_attrs=launcher.source.created_attrs(0, 0))
    asked = reference.ask(launcher.source.distributions)
    mine, theirs = study.trials[0], reference.trials[0]
    assert mine.state == theirs.state == TrialState.RUNNING
    assert mine.params == theirs.params == TUNING_POINTS[0]
    assert mine.distributions == theirs.distributions
    assert mine.user_attrs == theirs.user_attrs
    assert mine.datetime_start is not None and mine.datetime_complete is None
    assert (created.number, asked.number) == (0, 0)
    study.tell(created, 0.5)  # an ordinary trial to tell, too
    assert study.trials[0].state == TrialState.COMPLETE and study.best_value == 0.5


def test_two_launchers_on_one_study_never_start_the_same_planned_trial(tmp_path: Path) -> None:
    # Each launcher lists the planned trials once, at reconcile; each then skips those the other has
    # started since. Two studies on one database file: two processes' views of it.
    spec = load_study("tuning")
    first, second = (
        Launcher(spec, new_study(spec, tmp_path), DebugExecutor(), results_dir=tmp_path) for _ in range(2)
    )
    first.reconcile()
    second.reconcile()
    asked = [launcher.ask() for launcher in (first, second, first, first, second, second, first, second)]
    started = [trial.params for trial in asked if trial is not None]
    assert sorted(map(str, started)) == sorted(map(str, TUNING_POINTS))  # all seven, each once
    assert asked[-1] is None
    assert len(_stored(tmp_path, spec.name).trials) == 7


def _two_points(folder: Path, lrs: list[float], **train: Any) -> Path:
    return write_study(
        folder / "plan.toml",
        study={"name": "plan", "sampler": "grid"},
        space={"lr": lrs},
        train={**TINY_TRAIN, "epochs": 1, **train},
    )


def test_a_study_file_with_another_sampler_or_metric_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    spec = load_study(_two_points(tmp_path, [0.01, 0.02]))
    launch(spec, results_dir=results, executor="debug", job=instant_job)
    before = [(t.number, t.params, t.state) for t in _stored(results, "plan").trials]
    for study, fragment in (
        ({"sampler": "random", "n_trials": 2}, "with the grid sampler, the study file now says random"),
        ({"metric": "train_acc"}, "with metric 'val_acc', the study file now says 'train_acc'"),
    ):
        study_file = write_study(
            tmp_path / "plan.toml",
            study={"name": "plan", "sampler": "grid", **study},
            space={"lr": [0.01, 0.02]},
            train={**TINY_TRAIN, "epochs": 1},
        )
        for dry in ([], ["--dry-run"]):
            args = ["--study", str(study_file), "--executor", "debug", "--results-dir", str(results), *dry]
            assert_one_line_error(sweep_main(capsys, "launch", *args), "study 'plan' was launched", fragment)
    assert [(t.number, t.params, t.state) for t in _stored(results, "plan").trials] == before

    # what changes nothing of the configurations: how the data is fed, [resources]; repeats add seeds
    study_file = write_study(
        tmp_path / "plan.toml",
        study={"name": "plan", "sampler": "grid", "repeats": 2},
        space={"lr": [0.01, 0.02]},
        train={**TINY_TRAIN, "epochs": 1, "num_workers": 1},
        resources={"gpus": 0, "cpus": 2},
    )
    launch(load_study(study_file), results_dir=results, executor="debug", job=instant_job)
    _assert_all_complete(results, "plan", 4)


def test_a_sampled_study_whose_space_changed_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"

    def sampled(high: float) -> Path:
        return write_study(
            tmp_path / "tpe.toml",
            study={"name": "tpe", "sampler": "random", "n_trials": 1},
            space={"lr": {"low": 0.01, "high": high}},
            train={**TINY_TRAIN, "epochs": 1},
        )

    launch(load_study(sampled(0.1)), results_dir=results, executor="debug", job=instant_job)
    args = ["--study", str(sampled(0.2)), "--executor", "debug", "--results-dir", str(results)]
    result = sweep_main(capsys, "launch", *args)
    assert_one_line_error(result, "another [space]", "the random sampler learns from every stored trial")


def test_a_study_launched_before_plans_were_stored_is_matched_by_its_trials_values(tmp_path: Path) -> None:
    spec = load_study(_two_points(tmp_path, [0.01, 0.02]))
    study = new_study(spec, tmp_path)
    Launcher(spec, study, DebugExecutor(), results_dir=tmp_path, job=instant_job).run()  # stores no plan
    assert "plan" not in _stored(tmp_path, "plan").user_attrs
    grown = load_study(_two_points(tmp_path, [0.03, 0.01]))  # 0.03 first: positions moved, 0.02 gone
    launch(grown, results_dir=tmp_path, executor="debug", job=instant_job)
    trials = _stored(tmp_path, "plan").trials
    assert [(t.params, t.user_attrs["config"]) for t in trials] == [
        ({"lr": 0.01}, 0),
        ({"lr": 0.02}, 1),
        ({"lr": 0.03}, 2),
    ]
    assert _stored(tmp_path, "plan").user_attrs["plan"]["space"] == {"lr": [0.03, 0.01]}


def test_tuning_dry_run_prints_its_base_and_seven_trials_and_writes_nothing(
    tmp_path: Path, fake_cifar_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(fake_cifar_dir.parent)  # the shipped studies read data/ (here a fake CIFAR-10)
    results = tmp_path / "r"
    result = sweep_main(capsys, "launch", "--study", "tuning", "--dry-run", "--results-dir", str(results))
    assert_one_line_error(result, "[study] base 'optimizers'", "no database")  # optimizers first
    assert not results.exists()
    # the optimizers' jobs train nothing here: equal values, so the first configuration wins
    launch(load_study("optimizers"), results_dir=results, executor="debug", job=instant_job, out=print)
    db = (results / "sweep.db").read_bytes()
    args = ["--study", "tuning", "--executor", "debug", "--dry-run", "--results-dir", str(results)]
    result = sweep_main(capsys, "launch", *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Values from study `optimizers`'s winner: optimizer=sgd (configuration 0;")
    assert " Inherited: " in lines[0] and " depth=164 " in lines[0] and " epochs=50 " in lines[0]
    assert [line for line in lines if line.startswith("config ")] == [
        f"config {i} repeat 0  batch_size={p['batch_size']} num_workers={p['num_workers']} "
        f"weight_decay={p['weight_decay']:g}"
        for i, p in enumerate(TUNING_POINTS)
    ]
    assert (results / "sweep.db").read_bytes() == db


def test_dry_run_of_a_started_study_lists_only_what_is_left(
    tiny_smoke: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    spec = load_study(tiny_smoke)
    study = new_study(spec, results)
    launcher = Launcher(spec, study, DebugExecutor(), results_dir=results)
    launcher.reconcile()  # enqueues the 4 grid points
    finished, running = launcher.ask(), launcher.ask()
    assert finished is not None and running is not None
    study.tell(finished, 0.5)
    running.set_user_attr("job_id", "12345")
    db = (results / "sweep.db").read_bytes()

    result = sweep_main(
        capsys, "launch", "--study", str(tiny_smoke), "--dry-run", "--results-dir", str(results),
        "--executor", "local",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        "trial 1 running  job 12345  optimizer=sgd lr=0.01: would be re-attached",
        "config 2 repeat 0  optimizer=adam lr=0.05",
        "config 3 repeat 0  optimizer=adam lr=0.01",
        "smoke: 2 planned trials, 0 sampled to submit, 1 already finished; nothing submitted",
        f"executor: {chosen('local')}",
    ]
    assert (results / "sweep.db").read_bytes() == db


def test_dry_run_of_a_search_names_the_sampled_trials() -> None:
    lines: list[str] = []
    assert dry_run(load_study("search"), out=lines.append) == []
    assert lines[0] == "then 40 configurations x 1 repeats suggested by the tpe sampler"


def test_best_value_follows_the_direction() -> None:
    pairs = [(2.0, 0.3), (1.0, 0.5), (3.0, 0.4)]  # (val_loss, val_acc) per epoch
    records = [
        EpochMetrics(epoch, 1.0, 0.1, loss, acc, 0.1, 1.0, 1.0).to_dict()
        for epoch, (loss, acc) in enumerate(pairs, 1)
    ]
    records.append({"epoch": 4, "val_acc": float("nan"), "val_loss": float("nan")})  # a diverged epoch
    assert best(records, "val_acc", "maximize") == 0.5
    assert best(records, "val_loss", "minimize") == 1.0
    assert best(records, "test_acc", "maximize") is None


def test_make_pruner_follows_the_study() -> None:
    assert isinstance(make_pruner(load_study("smoke")), optuna.pruners.NopPruner)
    assert isinstance(make_pruner(load_study("search")), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner(load_study("tuning")), optuna.pruners.NopPruner)


# -- whole studies ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "executor", ["debug"]
)  # local: tests/test_quickstart.py runs the shipped smoke study
def test_smoke_study_completes(executor: str, tiny_smoke: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    result = run_sweep(
        "launch",
        "--study",
        str(tiny_smoke),
        "--executor",
        executor,
        "--parallel",
        "2",
        "--results-dir",
        str(results),
        timeout=deadline(180),
    )
    assert result.returncode == 0, result.stderr
    trials = _assert_all_complete(results, "smoke", 4)
    assert [t.params for t in trials] == [
        {"optimizer": o, "lr": lr} for o in ("sgd", "adam") for lr in (0.05, 0.01)
    ]
    assert {t.user_attrs["executor"] for t in trials} == {executor}
    lines = result.stdout.splitlines()
    assert sum("submitted" in line for line in lines) == 4
    assert sum(line.endswith("(best of 2 epochs)") for line in lines) == 4
    assert lines[-1].startswith("smoke: 4 trials (4 complete); best trial ")
    if executor == "local":
        assert (results / "runs" / "smoke" / "0" / "submitit").is_dir()


def test_launch_again_on_a_finished_study_runs_nothing(tmp_path: Path) -> None:
    study_file = write_study(
        tmp_path / "s.toml",
        study={"name": "again", "sampler": "grid"},
        space={"lr": [0.05]},
        train={**_tiny(), "epochs": 1},
    )
    results = tmp_path / "results"
    lines: list[str] = []
    launch(load_study(study_file), results_dir=results, executor="debug", out=lines.append, job=instant_job)
    lines.clear()
    summary = launch(load_study(study_file), results_dir=results, executor="debug", out=lines.append)
    assert lines == [
        "again: 1 trial (1 complete); best trial 0 val_acc " + f"{summary.best.value:.4f} lr=0.05"
    ]


@pytest.mark.slow
def test_failing_job_is_fail_with_traceback_and_the_study_goes_on(tmp_path: Path) -> None:
    # the files are there (preflight passes), but they are not CIFAR-10: the job fails reading them
    missing = tmp_path / "corrupt-data" / "cifar-10-batches-py"
    missing.mkdir(parents=True)
    for name in (*TRAIN_FILES, TEST_FILE):
        (missing / name).write_bytes(b"not a pickle")
    study_file = write_study(
        tmp_path / "fails.toml",
        study={"name": "fails", "sampler": "grid"},
        points=[
            {"dataset": "cifar10", "data_dir": str(missing.parent)},
            {"dataset": "fake", "data_dir": "data"},
        ],
        train={k: v for k, v in _tiny().items() if k != "dataset"} | {"epochs": 1},
    )
    results = tmp_path / "results"
    result = run_sweep(
        "launch", "--study", str(study_file), "--executor", "local", "--results-dir", str(results)
    )
    assert result.returncode == 1, result.stderr  # a trial failed: a script's next step does not run
    assert "fails: 1 trial of this launch failed" in result.stderr
    failed, complete = _stored(results, "fails").trials
    assert failed.state == TrialState.FAIL
    assert "Traceback" in failed.user_attrs["traceback"]
    assert "UserError" in failed.user_attrs["traceback"] and str(missing) in failed.user_attrs["traceback"]
    assert complete.state == TrialState.COMPLETE
    assert "trial 0 failed: " in result.stdout


@pytest.mark.slow
def test_a_configuration_that_cannot_learn_is_pruned_and_its_job_stopped(tmp_path: Path) -> None:
    study_file = write_study(
        tmp_path / "prune.toml",
        # Optuna's default waits for 5 finished trials; two are enough here. Prune from epoch 2 on.
        study={
            "name": "prune",
            "sampler": "grid",
            "pruner": "median",
            "pruner_startup_trials": 2,
            "pruner_warmup_epochs": 2,
        },
        points=[{"lr": 0.05, "epochs": 2}, {"lr": 0.03, "epochs": 2}, {"lr": 10.0, "epochs": 40}],
        train={k: v for k, v in _tiny().items() if k != "epochs"} | {"val_size": 64},
    )
    results = tmp_path / "results"
    lines: list[str] = []
    launch(
        load_study(study_file),
        results_dir=results,
        executor="local",
        read_every_s=0.1,
        out=lines.append,
    )
    good, also_good, bad = _stored(results, "prune").trials
    assert (good.state, also_good.state, bad.state) == (
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.PRUNED,
    )
    run_dir = Path(bad.user_attrs["run_dir"])
    # a prune stops the job without waiting for it (Job.stop_soon): its processes go within the grace
    wait_for(lambda: processes_mentioning(str(run_dir)) == [], timeout=deadline(30), what="the job to go")
    done = len(read_metrics(run_dir / "metrics.jsonl"))
    assert 2 <= done < 40
    assert not (run_dir / "result.json").exists()
    assert any(line.startswith("trial 2 pruned at epoch") for line in lines)


# -- restarts ---------------------------------------------------------------------------------------------


def _tiny() -> dict[str, Any]:
    return dict(TINY_TRAIN)


def _start_launcher(study_file: Path, results: Path, executor: str, sessions: list) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        sweep_cmd(
            "launch", "--study", str(study_file), "--executor", executor, "--results-dir", str(results)
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    sessions.append(proc)
    return proc


def _read_until(proc: subprocess.Popen[str], marker: str, *, timeout: float) -> list[str]:
    import selectors
    import time

    assert proc.stdout is not None
    seen: list[str] = []
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if selector.select(timeout=0.5):
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip("\n"))
            if marker in line:
                return seen
    raise AssertionError(f"no line with {marker!r} within {timeout}s; got {seen}")


@pytest.fixture
def four_points(tmp_path: Path) -> Path:
    return write_study(
        tmp_path / "restart.toml",
        study={"name": "restart", "sampler": "grid"},
        space={"lr": [0.05, 0.04, 0.03, 0.02]},
        train={**_tiny(), "epochs": 3},
    )


@pytest.mark.slow
def test_sigkilled_launcher_restarts_and_completes_each_point_once(
    four_points: Path, tmp_path: Path, sessions: list
) -> None:
    results = tmp_path / "results"
    first = _start_launcher(four_points, results, "local", sessions)
    _read_until(first, "trial 1 epoch 1/3", timeout=deadline(120))  # trial 0 complete, trial 1 running
    first.kill()  # SIGKILL: the launcher only; its job keeps running
    first.wait(timeout=deadline(10))
    before = {t.number: t.value for t in _stored(results, "restart").trials if t.state == TrialState.COMPLETE}
    assert 0 in before

    second = run_sweep(
        "launch",
        "--study",
        str(four_points),
        "--executor",
        "local",
        "--results-dir",
        str(results),
        timeout=deadline(180),
    )
    assert second.returncode == 0, second.stderr
    assert "trial 1 re-attached" in second.stdout
    trials = _assert_all_complete(results, "restart", 4)
    assert Counter(t.params["lr"] for t in trials) == Counter({0.05: 1, 0.04: 1, 0.03: 1, 0.02: 1})
    assert all(trials[number].value == value for number, value in before.items())


@pytest.mark.slow
def test_ctrl_c_stops_the_launcher_with_one_line_and_the_next_launch_completes_the_study(
    tmp_path: Path, sessions: list
) -> None:
    # trial 1 trains 30 epochs: it is surely still running when Ctrl-C comes after its first
    study_file = write_study(
        tmp_path / "ctrlc.toml",
        study={"name": "ctrlc", "sampler": "grid"},
        points=[{"lr": 0.05, "epochs": 2}, {"lr": 0.04, "epochs": 30}],
        train={k: v for k, v in _tiny().items() if k != "epochs"},
    )
    results = tmp_path / "results"
    first = _start_launcher(study_file, results, "local", sessions)
    _read_until(first, "trial 1 epoch 1/30", timeout=deadline(120))
    os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the launcher and its jobs
    rest, _ = first.communicate(timeout=deadline(60))
    assert first.returncode == 130
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    job = _stored(results, "ctrlc").trials[1].user_attrs["job_id"]
    assert f"ctrlc: launch interrupted with 1 trial running: trial 1 (job {job})." in rest
    assert rest.rstrip().splitlines()[-1].startswith("ctrlc: launch interrupted")  # one line, not two
    # the job runs in a session of its own: the terminal's Ctrl-C stopped the launcher only
    run_dir = results / "runs" / "ctrlc" / "1"
    assert processes_mentioning(str(run_dir))
    status = run_sweep("status", "--results-dir", str(results))
    assert f"job {job} (local: running" in status.stdout

    second = run_sweep(
        "launch", "--study", str(study_file), "--executor", "local", "--results-dir", str(results),
        timeout=deadline(180),
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert f"trial 1 re-attached  job {job}" in second.stdout
    _assert_all_complete(results, "ctrlc", 2)
    epochs = [record.epoch for record in read_metrics(run_dir / "metrics.jsonl")]
    assert epochs == list(range(1, 31))  # the same job trained on: no epoch twice


def test_ctrl_c_during_a_debug_job_names_it_and_the_next_launch_runs_it(tmp_path: Path) -> None:
    def ctrl_c(config: dict[str, Any], run_dir: str) -> None:
        raise KeyboardInterrupt  # as Ctrl-C arrives in the launcher while its in-process job trains

    spec = load_study(
        write_study(tmp_path / "one.toml", study={"name": "one", "sampler": "grid"}, space={"lr": [0.05]})
    )
    results, lines = tmp_path / "results", []
    with pytest.raises(KeyboardInterrupt):
        launch(spec, results_dir=results, executor="debug", out=lines.append, job=ctrl_c)
    assert lines[-1].startswith("one: launch interrupted with 1 trial running: trial 0 (its job ran in this")
    assert [t.state for t in _stored(results, "one").trials] == [TrialState.RUNNING]

    launch(spec, results_dir=results, executor="debug", out=lines.append)
    _assert_all_complete(results, "one", 1)


@pytest.mark.slow
def test_dead_job_is_resubmitted_on_its_run_dir_and_resumes(
    four_points: Path, tmp_path: Path, sessions: list
) -> None:
    results = tmp_path / "results"
    first = _start_launcher(four_points, results, "debug", sessions)
    metrics = results / "runs" / "restart" / "1" / "metrics.jsonl"
    wait_for(lambda: len(read_metrics(metrics)) >= 1, timeout=deadline(120), what="trial 1's first epoch")
    os.killpg(first.pid, signal.SIGKILL)  # the launcher and its in-process job
    first.wait(timeout=deadline(10))

    second = run_sweep(
        "launch",
        "--study",
        str(four_points),
        "--executor",
        "debug",
        "--results-dir",
        str(results),
        timeout=deadline(180),
    )
    assert second.returncode == 0, second.stderr
    assert "trial 1 submitted again" in second.stdout  # same trial, same run dir
    trials = _assert_all_complete(results, "restart", 4)
    assert trials[1].user_attrs["submissions"] == 2
    assert "resuming at epoch" in (results / "runs" / "restart" / "1" / "debug.log").read_text()
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2, 3]


def test_tpe_study_samples_up_to_n_trials_and_runs_each_repeat(tmp_path: Path) -> None:
    study_file = write_study(
        tmp_path / "tpe.toml",
        study={"name": "tpe", "sampler": "tpe", "pruner": "hyperband", "n_trials": 3, "repeats": 2},
        space={"lr": {"low": 0.01, "high": 0.1, "log": True}},
        points=[{"lr": 0.05}],
        train={**_tiny(), "epochs": 1},
    )
    results = tmp_path / "results"
    launch(load_study(study_file), results_dir=results, executor="debug", out=lambda _: None, job=instant_job)
    trials = _assert_all_complete(results, "tpe", 6)
    by_config: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for trial in trials:
        by_config.setdefault(trial.user_attrs["config"], []).append(trial)
    assert sorted(by_config) == [0, 1, 2]
    assert by_config[0][0].params == {"lr": 0.05}
    for pair in by_config.values():
        assert [t.user_attrs["repeat"] for t in pair] == [0, 1]
        assert pair[0].params == pair[1].params
        seeds = [
            json.loads((Path(t.user_attrs["run_dir"]) / "config.json").read_text())["seed"] for t in pair
        ]
        assert seeds == [0, 1]


@pytest.mark.parametrize(("age_s", "taken_over"), [(5.0, False), (HEARTBEAT_STALE_S + 5.0, True)])
def test_a_trial_of_a_launcher_on_another_host_is_left_while_its_heartbeat_is_fresh(
    tiny_smoke: Path, tmp_path: Path, age_s: float, taken_over: bool
) -> None:
    spec = load_study(tiny_smoke)
    study = new_study(spec, tmp_path)
    first = Launcher(spec, study, DebugExecutor(), results_dir=tmp_path)
    first.reconcile()
    trial = first.ask()
    assert trial is not None
    trial.set_user_attr("launcher", "another-host.example:4242")
    hand_claim(study, 0, launcher="another-host.example:4242", stamped=time.time() - age_s)
    trial.set_user_attr("job_id", "debug-1-1")
    trial.set_user_attr("run_dir", str(tmp_path / "runs" / "smoke" / "0"))

    lines: list[str] = []
    second = Launcher(spec, study, DebugExecutor(), results_dir=tmp_path, out=lines.append)
    second.reconcile()
    stored = study.trials[trial.number]
    assert (trial.number in second.running) is taken_over
    assert (stored.user_attrs["launcher"] == launcher_id()) is taken_over
    if not taken_over:
        assert lines == ["trial 0 is watched by the running launcher another-host.example:4242; leaving it"]


def test_a_job_started_but_not_recorded_is_re_attached_not_started_twice(
    tiny_smoke: Path, tmp_path: Path
) -> None:
    import submitit

    from sweep.executors.files import SUBMITIT_DIR
    from sweep.executors.local import LocalExecutor

    spec = load_study(tiny_smoke)
    study = new_study(spec, tmp_path)
    first = Launcher(spec, study, LocalExecutor(spec.resources), results_dir=tmp_path)
    first.reconcile()
    trial = first.ask()
    assert trial is not None
    # What `submit` leaves when its launcher dies between starting the job and storing the job id:
    run_dir = tmp_path / "runs" / "smoke" / str(trial.number)
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("submissions", 1)
    trial.set_user_attr("launcher", f"{socket.gethostname()}:999999999")  # no such process
    job = submitit.LocalExecutor(folder=run_dir / SUBMITIT_DIR).submit(time.sleep, 60)
    try:
        wait_for(
            lambda: (run_dir / SUBMITIT_DIR / f"{job.job_id}_submitted.pkl").exists(),
            timeout=deadline(30),
            what="job",
        )
        second = Launcher(
            spec, study, LocalExecutor(spec.resources), results_dir=tmp_path, out=lambda _: None
        )
        second.reconcile()
        assert second.running[trial.number].job.job_id == job.job_id
        stored = study.trials[trial.number]
        assert stored.user_attrs["job_id"] == job.job_id and stored.user_attrs["submissions"] == 1
    finally:
        job.cancel()


def test_missing_data_and_missing_gpus_are_one_line_before_anything_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-nvidia-smi"))  # no GPU on this machine, whatever it has
    results = tmp_path / "results"
    no_data = write_study(
        tmp_path / "nodata.toml",
        study={"name": "nodata", "sampler": "grid"},
        space={"lr": [0.1, 0.2]},
        train={**TINY_TRAIN, "dataset": "cifar10", "data_dir": str(tmp_path / "nowhere")},
    )
    gpu = write_study(
        tmp_path / "gpu.toml",
        study={"name": "gpu", "sampler": "grid"},
        space={"lr": [0.1]},
        train={**TINY_TRAIN, "device": "auto"},
        resources={"gpus": 1, "cpus": 1},
    )
    for path, fragment in (
        (no_data, "has no cifar-10-batches-py"),
        (gpu, "[resources] gpus = 1, but the GPUs"),
    ):
        for dry in ([], ["--dry-run"]):
            args = [
                "launch",
                "--study",
                str(path),
                "--executor",
                "local",
                "--results-dir",
                str(results),
                *dry,
            ]
            assert_one_line_error(sweep_main(capsys, *args), str(path), fragment)
    assert not results.exists()  # no storage, no run dir


def test_the_study_names_its_metric_for_the_dashboard(tiny_smoke: Path, tmp_path: Path) -> None:
    launch(
        load_study(tiny_smoke), results_dir=tmp_path, executor="debug", out=lambda _: None, job=instant_job
    )
    assert _stored(tmp_path, "smoke").metric_names == ["val_acc"]  # not "Objective 0"


def test_a_dry_run_shows_the_plan_and_then_what_would_stop_the_launch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no data/ here: the shipped optimizers study reads CIFAR-10 from there
    args = [
        "launch",
        "--study",
        "optimizers",
        "--executor",
        "local",
        "--dry-run",
        "--results-dir",
        str(tmp_path / "r"),
    ]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # a GPU, so that the missing data is the one problem
    result = sweep_main(capsys, *args)
    assert_one_line_error(result, "data_dir 'data'", "has no cifar-10-batches-py")
    assert "optimizers: 5 planned trials" in result.stdout
    assert not (tmp_path / "r").exists()


def test_ctrl_c_while_a_launch_sets_up_says_one_line(
    tiny_smoke: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C before the loop (the checks, opening the storage) printed nothing and exited 130."""
    from sweep.launcher import preflight

    def interrupted(*_: object) -> list[str]:
        raise KeyboardInterrupt  # where a Ctrl-C during the checks arrives

    monkeypatch.setattr(preflight, "problems", interrupted)
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        launch(load_study(tiny_smoke), results_dir=tmp_path, executor="debug", out=lines.append)
    assert lines == ["smoke: launch interrupted while setting up; no trial was started"]
