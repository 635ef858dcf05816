"""What pruning saves, measured through `sweep launch` on replayed LCBench learning curves.

    python benchmarks/efficiency.py --data ../shared/data/yahpo-lcbench --tasks 3945,34539 --seeds 2

For each task, an 81-configuration grid (learning_rate 1e-3/1e-2/1e-1, batch_size 32/128/512, max_units
64/256/1024, num_layers 1/3/5; max_dropout 0.1, momentum 0.9, weight_decay 1e-4) is read from the
surrogate once (`benchmarks.lcbench`), and each method runs as a study of its own through `python -m
sweep launch --executor local --parallel 8`, whose program (`benchmarks/replay_epochs.py`) replays a
configuration's curve one epoch every --epoch-s seconds. The methods (the same 81 configurations):

    grid+sha        the grid, pruner = "successive_halving", pruner_warmup_epochs = 2 (rungs 2, 6, 18):
                    the program waits at each rung for the launcher's word (`trainer.rung_word`)
    grid+sha-nowait the same with the program's [program] env SWEEP_RUNG_WAIT_S = "0": it never waits,
                    training on while the launcher decides (what grid+sha was before the rung word)
    grid+sync-sh    the grid, pruner = "synchronous_halving", pruner_warmup_epochs = 2: trials pause at
                    rungs 2, 6, 18 and the best third of each rung resume from where they stopped
    grid+hyperband  the grid, pruner = "hyperband", pruner_warmup_epochs = 2
    tpe+sha         TPE, n_trials = 81 (the grid's trial budget), pruner = "successive_halving",
                    pruner_warmup_epochs = 2
    random+median   random, n_trials = 81, pruner = "median" (5 startup trials, 5 warm-up epochs)

TPE and random draw from the grid's values (a configuration may be drawn twice, as in any study).

The methods run one after another (--together: a task's methods at the same time, quicker, but four
launchers then share the CPU and read epochs late: see RESULTS.md). Each is compared with
the full grid, whose cost and winner come from the surrogate directly: training time used (the
surrogate's `time` at the last epoch each trial ran, summed) as a % of the grid's 81 x 52 epochs;
regret, the grid's best final val_accuracy less that of the configuration the study chose (its best
complete trial), in points; trials and epochs run; wall time. `sync-sha` is the synchronous successive
halving reference (eta 3, rungs 2, 6, 18, 52) computed from the curves alone, without sweep. The
profile says where a pruned trial's epochs beyond its rung went: epochs logged before the launcher read
the rung epoch (`seen late`), and after the launcher's prune (`after prune`: the job was not yet stopped).
The studies' storage and run dirs go to a temp dir in /dev/shm where there is one (--keep: a folder of
yours). The last line is the method docs/guide/pruning-and-budgets.md recommends (RECOMMENDED).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `benchmarks` is then not importable by itself
    sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from benchmarks.lcbench import EPOCHS, Config, Curve, curves  # noqa: E402
from sweep.store.records import TrialRecord  # noqa: E402

RECOMMENDED = "grid+sync-sh"
DEFAULT_TASKS = "3945,34539,126025,167104,168908,189909"
GRID = [
    Config(batch_size=b, learning_rate=lr, max_units=u, num_layers=n)
    for lr in (1e-3, 1e-2, 1e-1)
    for b in (32, 128, 512)
    for u in (64, 256, 1024)
    for n in (1, 3, 5)
]
METHODS = {  # [study] lines of each method's study file
    "grid+sha": 'sampler = "grid"\npruner = "successive_halving"\npruner_warmup_epochs = 2',
    "grid+sha-nowait": 'sampler = "grid"\npruner = "successive_halving"\npruner_warmup_epochs = 2',
    "grid+sync-sh": 'sampler = "grid"\npruner = "synchronous_halving"\npruner_warmup_epochs = 2',
    "grid+hyperband": 'sampler = "grid"\npruner = "hyperband"\npruner_warmup_epochs = 2',
    "tpe+sha": (
        f'sampler = "tpe"\nn_trials = {len(GRID)}\npruner = "successive_halving"\npruner_warmup_epochs = 2'
    ),
    "random+median": (
        f'sampler = "random"\nn_trials = {len(GRID)}\npruner = "median"\n'
        "pruner_startup_trials = 5\npruner_warmup_epochs = 5"
    ),
}
PROGRAM_ENV = {"grid+sha-nowait": 'env = { SWEEP_RUNG_WAIT_S = "0" }'}  # [program] lines of a method
STUDY_TOML = """\
[study]
name = "{name}"
metric = "val_acc"
direction = "maximize"
{method}

[train]
epochs = {epochs}

[program]
command = ["{python}", "{replay}", "{curves}", "{key}", "{epoch_s}"]
stop_grace_s = 1
{program_env}

[space]
learning_rate = [0.001, 0.01, 0.1]
batch_size = [32, 128, 512]
max_units = [64, 256, 1024]
num_layers = [1, 3, 5]

[resources]
gpus = 0
cpus = 1
"""


@dataclass(frozen=True)
class Outcome:
    """One method on one task and seed."""

    method: str
    task: str
    seed: int
    time_pct: float  # training time used, % of the full grid's
    regret: float  # points of val_accuracy below the grid's best final one
    trials: int
    epochs: int
    wall_s: float
    seen_late: int = 0  # pruned trials' epochs logged after the rung epoch, before the launcher read it
    after_prune: int = 0  # pruned trials' epochs logged after the launcher pruned them
    pruned: int = 0
    decision_s: tuple[float, ...] = ()  # per pruned trial: from its rung epoch's line to the prune


def study_name(method: str) -> str:
    return "eff-" + method.replace("+", "-")


def grid_cost(table: dict[str, Curve]) -> float:
    """The full grid's training time: every configuration's 52 epochs."""
    return sum(curve.time[-1] for curve in table.values())


def sync_sha(
    table: dict[str, Curve], rungs: tuple[int, ...] = (2, 6, 18, EPOCHS), eta: int = 3
) -> tuple[float, str]:
    """Synchronous successive halving: (training time used, the winner's key). Promoted trials continue."""
    alive = list(table)
    used = 0.0
    for index, rung in enumerate(rungs):
        used += sum(
            table[key].time[rung - 1] - (table[key].time[rungs[index - 1] - 1] if index else 0.0)
            for key in alive
        )
        if rung == rungs[-1]:
            break
        alive = sorted(alive, key=lambda key: table[key].val_accuracy[rung - 1], reverse=True)
        alive = alive[: max(1, len(alive) // eta)]
    return used, max(alive, key=lambda key: table[key].val_accuracy[-1])


def read_lines(path: Path) -> list[dict[str, float]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def collect(
    method: str, task: str, seed: int, results: Path, table: dict[str, Curve], wall_s: float
) -> Outcome:
    """The method's figures from its stored study and its run dirs."""
    study = optuna.load_study(study_name=study_name(method), storage=f"sqlite:///{results / 'sweep.db'}")
    trials = study.get_trials(deepcopy=False)
    used, epochs, late, after, pruned = 0.0, 0, 0, 0, 0
    decisions: list[float] = []
    for trial in trials:
        run_dir = TrialRecord.of(trial).run_dir
        lines = read_lines(run_dir / "metrics.jsonl") if run_dir is not None else []
        if not lines:
            continue
        last = max(lines, key=lambda line: line["epoch"])
        used += float(last["train_time"])
        epochs += len(lines)
        if trial.state == TrialState.PRUNED and trial.intermediate_values and trial.datetime_complete:
            pruned += 1
            rung = max(trial.intermediate_values)
            told = trial.datetime_complete.timestamp()
            beyond = [line for line in lines if line["epoch"] > rung]
            after += sum(1 for line in beyond if line["at"] > told)
            late += sum(1 for line in beyond if line["at"] <= told)
            decisions += [told - line["at"] for line in lines if line["epoch"] == rung]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    best_final = max(curve.val_accuracy[-1] for curve in table.values())
    if complete:
        chosen = max(complete, key=lambda t: t.value if t.value is not None else -math.inf).params
        key = Config(
            batch_size=chosen["batch_size"],
            learning_rate=chosen["learning_rate"],
            max_units=chosen["max_units"],
            num_layers=chosen["num_layers"],
        ).key
        regret = best_final - table[key].val_accuracy[-1]
    else:
        regret = math.nan
    return Outcome(
        method,
        task,
        seed,
        100.0 * used / grid_cost(table),
        regret,
        len(trials),
        epochs,
        wall_s,
        late,
        after,
        pruned,
        tuple(decisions),
    )


def run_seed(
    task: str, seed: int, folder: Path, curves_file: Path, args: argparse.Namespace
) -> list[Outcome]:
    """Every method on one task, each through `python -m sweep launch`: one after another, or all at
    once with --together (their launchers then share the CPU and may read epochs late)."""
    table = {key: Curve(**value) for key, value in json.loads(curves_file.read_text()).items()}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    started: dict[str, tuple[subprocess.Popen[bytes], float, Path]] = {}
    outcomes = []
    for method in args.methods:
        results = folder / f"{task}-{seed}-{method.replace('+', '-')}"
        results.mkdir(parents=True)
        study_file = results / "study.toml"
        study_file.write_text(
            STUDY_TOML.format(
                name=study_name(method),
                method=METHODS[method],
                program_env=PROGRAM_ENV.get(method, ""),
                epochs=EPOCHS,
                python=sys.executable,
                replay=ROOT / "benchmarks" / "replay_epochs.py",
                curves=curves_file,
                key="{learning_rate}/{batch_size}/{max_units}/{num_layers}",  # Config.key's placeholders
                epoch_s=args.epoch_s,
            )
        )
        command = [sys.executable, "-m", "sweep", "launch", "--study", str(study_file), "--executor", "local",
                   "--parallel", str(args.parallel), "--results-dir", str(results)]  # fmt: skip
        with (results / "launch.log").open("wb") as log:
            process = subprocess.Popen(command, cwd=results, env=env, stdout=log, stderr=subprocess.STDOUT)
        started[method] = (process, time.monotonic(), results)
        if not args.together:
            outcomes.append(_ended(method, task, seed, started.pop(method), table))
    outcomes += [_ended(method, task, seed, item, table) for method, item in started.items()]
    return outcomes


def _ended(
    method: str,
    task: str,
    seed: int,
    item: tuple[subprocess.Popen[bytes], float, Path],
    table: dict[str, Curve],
) -> Outcome:
    """Wait for a method's launch to end; its figures."""
    process, start, results = item
    code = process.wait()
    wall = time.monotonic() - start
    if code != 0:
        tail = (results / "launch.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise SystemExit(f"efficiency: {method} on task {task} exited {code}: {' | '.join(tail)}")
    return collect(method, task, seed, results, table, wall)


def median(values: list[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return statistics.median(finite) if finite else math.nan


def report(outcomes: list[Outcome], references: list[tuple[float, float]]) -> list[str]:
    """The table of medians over tasks and seeds, then the profile."""
    lines = [
        f"{'method':<16}{'time %':>8}{'regret':>8}{'trials':>8}{'epochs':>8}{'wall s':>8}  (medians; runs)",
        f"{'full grid':<16}{100.0:>8.1f}{0.0:>8.2f}{len(GRID):>8}{len(GRID) * EPOCHS:>8}{'-':>8}"
        "  (surrogate)",
        f"{'sync-sha':<16}{median([r[0] for r in references]):>8.1f}"
        f"{median([r[1] for r in references]):>8.2f}"
        f"{len(GRID):>8}{'-':>8}{'-':>8}  (surrogate, no sweep; {len(references)} tasks)",
    ]
    methods = sorted({o.method for o in outcomes}, key=list(METHODS).index)
    for method in methods:
        mine = [o for o in outcomes if o.method == method]
        lines.append(
            f"{method:<16}{median([o.time_pct for o in mine]):>8.1f}{median([o.regret for o in mine]):>8.2f}"
            f"{median([o.trials for o in mine]):>8.0f}{median([o.epochs for o in mine]):>8.0f}"
            f"{median([o.wall_s for o in mine]):>8.1f}  ({len(mine)} runs; "
            f"regret max {max(o.regret for o in mine):.2f},"
            f" time % max {max(o.time_pct for o in mine):.1f})"
        )
    lines.append(
        "profile: pruned trials' epochs past the rung, summed over runs (seen late | after the prune);"
        " rung epoch written to prune, median and 90th percentile over pruned trials; trials per second"
    )
    for method in methods:
        mine = [o for o in outcomes if o.method == method]
        pruned = sum(o.pruned for o in mine)
        late, after = sum(o.seen_late for o in mine), sum(o.after_prune for o in mine)
        rate = sum(o.trials for o in mine) / sum(o.wall_s for o in mine)
        decisions = sorted(value for o in mine for value in o.decision_s)
        seen = "-"
        if decisions:
            tail = decisions[min(len(decisions) - 1, int(0.9 * len(decisions)))]
            seen = f"{statistics.median(decisions):.2f} s (p90 {tail:.2f} s)"
        lines.append(
            f"  {method:<16}{pruned:>6} pruned trials  {late:>5} seen late  {after:>5} after prune"
            f"  decided {seen}  {rate:.2f} trials/s"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="the folder of the LCBench surrogate")
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help=f"OpenML task ids (default {DEFAULT_TASKS})")
    parser.add_argument("--seeds", type=int, default=3, help="runs of each method per task (default 3)")
    parser.add_argument("--epoch-s", type=float, default=0.3, help="wall seconds of a replayed epoch")
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated, of: " + ", ".join(METHODS)
    )
    parser.add_argument("--together", action="store_true", help="run a task's methods at the same time")
    parser.add_argument("--keep", type=Path, help="keep the studies and run dirs here (default: a temp dir)")
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; known: {', '.join(METHODS)}")
    tasks = [t for t in args.tasks.split(",") if t]
    # memory-backed when there is /dev/shm: on a loaded disk each SQLite commit's fsync took 11 ms and
    # the launcher, committing every epoch of 8 trials, fell behind epochs of 0.3 s
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    folder = args.keep or Path(tempfile.mkdtemp(prefix="sweep-efficiency-", dir=shm))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    references: list[tuple[float, float]] = []
    try:
        for task in tasks:
            table = curves(args.data, task, GRID)
            cost, winner = sync_sha(table)
            best = max(curve.val_accuracy[-1] for curve in table.values())
            references.append((100.0 * cost / grid_cost(table), best - table[winner].val_accuracy[-1]))
            curves_file = folder / f"curves-{task}.json"
            curves_file.write_text(json.dumps({key: curve.to_dict() for key, curve in table.items()}))
            for seed in range(args.seeds):
                for outcome in run_seed(task, seed, folder, curves_file, args):
                    outcomes.append(outcome)
                    print(
                        f"task {task} seed {seed} {outcome.method:<15} time {outcome.time_pct:5.1f}%  "
                        f"regret {outcome.regret:5.2f}  trials {outcome.trials}  epochs {outcome.epochs}  "
                        f"wall {outcome.wall_s:.1f} s",
                        flush=True,
                    )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    for line in report(outcomes, references):
        print(line)
    print(f"total wall {time.monotonic() - started:.0f} s")
    mine = [o for o in outcomes if o.method == RECOMMENDED]
    if mine:
        print(
            f"efficiency: {RECOMMENDED} {median([o.time_pct for o in mine]):.1f}% of the grid's "
            "training time, "
            f"median regret {median([o.regret for o in mine]):.2f} points ({len(mine)} runs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
