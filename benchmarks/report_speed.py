"""How long `sweep report` takes on a 10,000-trial study (target: 2 s or less, the whole command).

The study is made in a temp dir in seconds (see `make_study`): trials from `create_trial` (80%
complete, 15% pruned, 5% failed; 4 params; 5 intermediate values each), plus a few trials with a
run dir and a 50-epoch metrics.jsonl like the trainer's. Then `python -m sweep report` runs as a
real subprocess, as a user would start it, a few times.

    python benchmarks/report_speed.py [--trials 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import sqlalchemy as sa
from optuna.distributions import CategoricalDistribution, FloatDistribution, distribution_to_json
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState, create_trial

ROOT = Path(__file__).resolve().parents[1]
STUDY = "bench"
DISTRIBUTIONS = {
    "optimizer": CategoricalDistribution(["sgd", "sgd_nesterov", "adam"]),
    "lr": FloatDistribution(0.01, 0.5, log=True),
    "weight_decay": FloatDistribution(1e-5, 1e-3, log=True),
    "batch_size": CategoricalDistribution([64, 128, 256]),
}
WITH_METRICS = 20  # trials that also get a run dir with a 50-epoch metrics file


def make_study(results: Path, n_trials: int, *, seed: int = 0) -> float:
    """Create the study in results/sweep.db; returns the seconds it took.

    The first trial goes in through `study.add_trials`; the rest are the same kind of rows written
    with Optuna's own SQLAlchemy table models in one transaction, because `add_trials` commits each
    trial on its own (about 15 ms a trial here: 2.5 minutes for 10,000).
    """
    start = time.perf_counter()
    rng = random.Random(seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = RDBStorage(f"sqlite:///{results / 'sweep.db'}")
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    study.set_user_attr("metric", "val_acc")
    trials = [_trial(number, rng, results) for number in range(n_trials)]
    study.add_trials(trials[:1])
    _bulk_add(storage, storage.get_study_id_from_name(STUDY), trials[1:])
    stored = len(study.get_trials(deepcopy=False))
    if stored != n_trials:
        raise RuntimeError(f"the study holds {stored} trials, not {n_trials}")
    return time.perf_counter() - start


def _bulk_add(storage: RDBStorage, study_id: int, trials: list[FrozenTrial]) -> None:
    """Insert `trials` (numbered after the stored ones) in one transaction."""
    tables: dict[str, list[dict[str, object]]] = {
        "trials": [],
        "params": [],
        "values": [],
        "steps": [],
        "attrs": [],
    }
    now = datetime.datetime.now()
    with storage.engine.begin() as conn:
        first_id = conn.execute(sa.select(sa.func.max(models.TrialModel.trial_id))).scalar_one() + 1
        first_number = first_id - 1  # trial ids and numbers both count from the study's first trial
        for offset, trial in enumerate(trials):
            trial_id = first_id + offset
            tables["trials"].append(
                {
                    "trial_id": trial_id,
                    "number": first_number + offset,
                    "study_id": study_id,
                    "state": trial.state,
                    "datetime_start": now,
                    "datetime_complete": now,
                }
            )
            for name, value in trial.params.items():
                dist = trial.distributions[name]
                tables["params"].append(
                    {
                        "trial_id": trial_id,
                        "param_name": name,
                        "param_value": dist.to_internal_repr(value),
                        "distribution_json": distribution_to_json(dist),
                    }
                )
            if trial.value is not None:
                value, kind = models.TrialValueModel.value_to_stored_repr(trial.value)
                tables["values"].append(
                    {"trial_id": trial_id, "objective": 0, "value": value, "value_type": kind}
                )
            for step, reported in trial.intermediate_values.items():
                stored, stored_kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(
                    reported
                )
                tables["steps"].append(
                    {
                        "trial_id": trial_id,
                        "step": step,
                        "intermediate_value": stored,
                        "intermediate_value_type": stored_kind,
                    }
                )
            for key, value in trial.user_attrs.items():
                tables["attrs"].append({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)})
        for model, key in (
            (models.TrialModel, "trials"),
            (models.TrialParamModel, "params"),
            (models.TrialValueModel, "values"),
            (models.TrialIntermediateValueModel, "steps"),
            (models.TrialUserAttributeModel, "attrs"),
        ):
            if tables[key]:
                conn.execute(sa.insert(model.__table__), tables[key])


def _trial(number: int, rng: random.Random, results: Path) -> FrozenTrial:
    params = {
        "optimizer": rng.choice(["sgd", "sgd_nesterov", "adam"]),
        "lr": math.exp(rng.uniform(math.log(0.01), math.log(0.5))),
        "weight_decay": math.exp(rng.uniform(math.log(1e-5), math.log(1e-3))),
        "batch_size": rng.choice([64, 128, 256]),
    }
    roll = rng.random()
    state = TrialState.COMPLETE if roll < 0.8 else TrialState.PRUNED if roll < 0.95 else TrialState.FAIL
    ceiling = rng.uniform(0.6, 0.95)
    curve = {epoch: ceiling * (1 - math.exp(-epoch / 2)) for epoch in range(1, 6)}
    attrs: dict[str, object] = {"config": number, "repeat": 0}
    if number < WITH_METRICS:
        attrs["run_dir"] = str(_metrics_file(results / "runs" / STUDY / str(number), ceiling))
        state = TrialState.COMPLETE
    return create_trial(
        state=state,
        value=max(curve.values()) if state == TrialState.COMPLETE else None,
        params=params,
        distributions=DISTRIBUTIONS,
        user_attrs=attrs,
        intermediate_values=curve,
    )


def _metrics_file(run_dir: Path, ceiling: float, epochs: int = 50) -> Path:
    run_dir.mkdir(parents=True)
    lines = []
    for epoch in range(1, epochs + 1):
        acc = ceiling * (1 - math.exp(-epoch / 8))
        record = {
            "epoch": epoch,
            "train_loss": 2.3 * (1 - acc),
            "train_acc": min(1.0, acc + 0.03),
            "val_loss": 2.3 * (1 - acc) + 0.1,
            "val_acc": acc,
            "lr": 0.1,
            "epoch_seconds": 60.0,
            "images_per_second": 900.0,
        }
        lines.append(json.dumps(record) + "\n")
    (run_dir / "metrics.jsonl").write_text("".join(lines))
    return run_dir


def time_report(results: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one `python -m sweep report` subprocess, imports included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sweep", "report", "--study", STUDY, "--results-dir", str(results)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp)
        made = make_study(results, args.trials)
        print(f"study: {args.trials:,} trials ({WITH_METRICS} with metrics files) made in {made:.1f} s")
        runs = [time_report(results) for _ in range(args.runs)]
        walls, cpus = [wall for wall, _ in runs], [cpu for _, cpu in runs]
        table = (results / f"{STUDY}.md").read_text().count("\n| ") - 1
        page = (results / f"{STUDY}.html").stat().st_size / 1e6
        print(f"sweep report: {table:,} table rows, {page:.1f} MB page")
        print(
            f"sweep report on {args.trials:,} trials: wall median {statistics.median(walls):.2f} s "
            f"(min {min(walls):.2f} s), CPU median {statistics.median(cpus):.2f} s over {args.runs} runs; "
            f"target <= 2 s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    main()
