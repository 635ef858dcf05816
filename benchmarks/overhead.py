"""Per-trial overhead of `sweep launch` on a no-op job, against a plain Optuna `study.optimize` loop.

    python benchmarks/overhead.py                          # debug and local executors, poll 0.5 s and 0.01 s
    python benchmarks/overhead.py --trials 50 --executors debug --poll-s 0.01 --profile

Every trial runs `benchmarks.noop_job.noop` (one metrics line, no training), so what is timed is the
machinery around a job: the launcher's ask / submit / poll / tell with SQLite storage and, for `local`,
a submitit subprocess per trial. The reference is the same no-op in a plain `study.optimize` loop on a
GridSampler over the same points, with SQLite storage (the launcher's) and in memory. For `local` there is
a second reference, the floor of any launcher on submitit's LocalExecutor: the plain loop whose objective
submits the no-op to a LocalExecutor and blocks on its process (no polling). The study is a grid of
--trials points built with `sweep.study.load_study` from a TOML file written to a temp dir.

With --programs, each executor also runs the grid as a study with a `[program]` (the user's own
program's path): `command`, a shell one-liner that logs one epoch (the lightest program a user can
have), and `callable`, a Python function that does the same (run by sweep in a fresh interpreter). Each
is compared with the plain no-op job on the same executor.

Last, the time of the whole `sweep report` command on a study of --report-trials trials (10,000 by
default; 0 skips it), made and timed by `benchmarks/report_speed.py`, which has the details.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `benchmarks` is then not importable by itself
    sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from benchmarks import report_speed  # noqa: E402
from benchmarks.noop_job import noop  # noqa: E402
from sweep.launcher import launch  # noqa: E402
from sweep.launcher.loop import READ_EVERY_S  # noqa: E402
from sweep.study import StudySpec, load_study  # noqa: E402

REFERENCE = "plain optuna, sqlite"
SUBMITIT_FLOOR = "plain optuna + submitit local"
STUDY_TOML = """\
[study]
name = "overhead"
metric = "val_acc"
direction = "maximize"
sampler = "grid"
pruner = "none"
repeats = 1

[train]
dataset = "fake"
depth = 8
epochs = 1
device = "cpu"

[space]
lr = [{values}]

[resources]
gpus = 0
cpus = 1
"""


# The no-op as a user's program: one epoch logged, nothing else ({{ }}: braces, not placeholders).
NOOP_COMMAND = """sh -c 'echo "{{\\"epoch\\": 1, \\"val_acc\\": 0.5}}" >> "$SWEEP_RUN_DIR/metrics.jsonl"'"""
NOOP_MODULE = """\
import json
def main(params, run_dir):
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": 1, "val_acc": params["lr"]}) + "\\n")
"""


def grid_values(trials: int) -> list[float]:
    return [round(0.001 * (i + 1), 6) for i in range(trials)]


def study_spec(trials: int, folder: Path, program: str | None = None) -> StudySpec:
    """A grid study of `trials` points over lr, parsed from a study file like any other; `program`
    (command | callable) makes it a study of the no-op as a user's own program."""
    path = folder / "overhead.toml"
    text = STUDY_TOML.format(values=", ".join(repr(v) for v in grid_values(trials)))
    if program == "command":
        text = text.replace(_TRAINER_KEYS, "") + f"[program]\ncommand = {json.dumps(NOOP_COMMAND)}\n"
    elif program == "callable":
        (folder / "noop_program.py").write_text(NOOP_MODULE)
        text = text.replace(_TRAINER_KEYS, "") + '[program]\ncallable = "noop_program:main"\n'
    path.write_text(text)
    return load_study(path)


_TRAINER_KEYS = 'dataset = "fake"\ndepth = 8\nepochs = 1\ndevice = "cpu"\n'  # TrainConfig fields


def time_launcher(
    trials: int,
    executor: str,
    poll_s: float,
    *,
    parallel: int = 1,
    profile: bool = False,
    program: str | None = None,
) -> float:
    """Seconds per trial of `launch` over a fresh grid study of `trials` no-op trials (as a program's)."""
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        spec = study_spec(trials, Path(tmp), program)

        def go() -> None:
            summary = launch(
                spec, results_dir=Path(tmp) / "results", executor=executor, parallel=parallel,
                read_every_s=poll_s,
                job=None if program else noop, out=lambda line: None,
            )  # fmt: skip
            if summary.states.get("COMPLETE") != trials:
                raise RuntimeError(f"expected {trials} complete trials, got {dict(summary.states)}")

        return _timed(go, profile=profile, label=f"launch, {executor} executor, poll {poll_s} s") / trials


def time_plain_optuna(trials: int, *, sqlite: bool) -> float:
    """Seconds per trial of `study.optimize` calling the same no-op on the same grid."""
    values = grid_values(trials)
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        storage = f"sqlite:///{tmp}/optuna.db" if sqlite else None

        def objective(trial: optuna.Trial) -> float:
            lr = trial.suggest_categorical("lr", values)
            run_dir = Path(tmp) / "runs" / str(trial.number)
            run_dir.mkdir(parents=True)
            return noop({"lr": lr}, str(run_dir))["best_val_acc"]

        def go() -> None:
            sampler = optuna.samplers.GridSampler({"lr": values}, seed=0)
            study = optuna.create_study(storage=storage, sampler=sampler, direction="maximize")
            study.optimize(objective, n_trials=trials)

        return _timed(go) / trials


def time_plain_submitit(trials: int) -> float:
    """Seconds per trial of `study.optimize` (SQLite) whose objective runs the no-op as a submitit local job.

    It waits on the job's controller process (waitpid, no polling), so what it measures is submitit's
    own cost per job (two Python processes) plus plain Optuna's: the least any launcher on it can take.
    """
    import submitit

    values = grid_values(trials)
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:

        def objective(trial: optuna.Trial) -> float:
            lr = trial.suggest_categorical("lr", values)
            run_dir = Path(tmp) / "runs" / str(trial.number)
            run_dir.mkdir(parents=True)
            executor = submitit.LocalExecutor(folder=run_dir / "submitit")
            executor.update_parameters(timeout_min=60)
            job = executor.submit(noop, {"lr": lr}, str(run_dir))
            job._process.wait()  # type: ignore[attr-defined]
            return float(job.result()["best_val_acc"])

        def go() -> None:
            sampler = optuna.samplers.GridSampler({"lr": values}, seed=0)
            storage = f"sqlite:///{tmp}/optuna.db"
            study = optuna.create_study(storage=storage, sampler=sampler, direction="maximize")
            study.optimize(objective, n_trials=trials)

        return _timed(go) / trials


def time_report(trials: int, repeats: int) -> str:
    """A line with the wall time of `sweep report` on a study of `trials` trials, median of `repeats`."""
    with tempfile.TemporaryDirectory(prefix="overhead-report-") as tmp:
        report_speed.make_study(Path(tmp), trials)
        walls = [report_speed.time_report(Path(tmp))[0] for _ in range(repeats)]
    label = f"sweep report, {trials:,} trials"
    return f"{label:34} {statistics.median(walls):8.2f} s (whole command, median of {repeats}; target <= 2 s)"


class SqlCounter:
    """SQL commits and statements of every SQLAlchemy engine in this process (optuna's SQLite storage)."""

    def __init__(self) -> None:
        self.commits = self.statements = 0
        self.enabled = False

    def install(self) -> None:
        import sqlalchemy.event
        from sqlalchemy.engine import Engine

        sqlalchemy.event.listen(Engine, "commit", self._commit)
        sqlalchemy.event.listen(Engine, "before_cursor_execute", self._statement)
        self.enabled = True

    def _commit(self, *args: object) -> None:
        self.commits += 1

    def _statement(self, *args: object) -> None:
        self.statements += 1

    def take(self, trials: int) -> str:
        """The counts per trial since the last take, as a suffix for a result line."""
        text = f"  {self.commits / trials:5.1f} commits, {self.statements / trials:5.1f} statements/trial"
        self.commits = self.statements = 0
        return text if self.enabled else ""


def _timed(fn: Callable[[], None], *, profile: bool = False, label: str = "") -> float:
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler is not None:
        profiler.runcall(fn)
    else:
        fn()
    seconds = time.perf_counter() - start
    if profiler is not None:
        print(f"\n-- cProfile of {label}: top 25 by cumulative time")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/overhead.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("--trials", type=int, default=20, help="grid points, one trial each (default 20)")
    parser.add_argument(
        "--executors", default="debug,local", help="comma-separated: debug, local (default both)"
    )
    parser.add_argument(
        "--poll-s", default=f"{READ_EVERY_S},0.01",
        help=f"comma-separated poll intervals in seconds (default {READ_EVERY_S}, the launcher's, and 0.01)",
    )  # fmt: skip
    parser.add_argument("--parallel", type=int, default=1, help="the launcher's jobs at once (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, median taken (default 3)")
    parser.add_argument(
        "--report-trials", type=int, default=10_000,
        help="trials of the study `sweep report` is timed on, once per round (default 10,000; 0: skip)",
    )  # fmt: skip
    parser.add_argument(
        "--programs", action="store_true", help="also the no-op as a [program]: command and callable"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one more run of each launch")
    parser.add_argument("--count-sql", action="store_true", help="SQL commits and statements per trial")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A local job is a fresh Python process: it must import benchmarks.noop_job, whatever its cwd.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials, repeats = args.trials, args.repeats
    print(
        f"no-op trials: {trials}, launcher --parallel {args.parallel}; ms per trial = whole run / trials, "
        f"median of {repeats} rounds (each round runs every line once, in turn)"
    )
    sql = SqlCounter()
    if args.count_sql:
        sql.install()
    executors = args.executors.split(",")
    measures: dict[str, Callable[[], float]] = {
        REFERENCE: lambda: time_plain_optuna(trials, sqlite=True),
        "plain optuna, in memory": lambda: time_plain_optuna(trials, sqlite=False),
    }
    if "local" in executors:
        measures[SUBMITIT_FLOOR] = lambda: time_plain_submitit(trials)
    for executor in executors:
        for poll_s in (float(p) for p in args.poll_s.split(",")):
            label = f"sweep launch, {executor}, poll {poll_s:g} s"
            run = functools.partial(time_launcher, trials, executor, poll_s, parallel=args.parallel)
            measures[label] = run
        if args.programs:
            poll_s = float(args.poll_s.split(",")[0])
            for program in ("command", "callable"):
                label = f"sweep launch, {executor}, {program}"
                measures[label] = functools.partial(
                    time_launcher, trials, executor, poll_s, parallel=args.parallel, program=program
                )
    # Rounds, not one line after another: the load of a shared machine drifts, and a ratio of two
    # figures taken minutes apart would measure the drift.
    times: dict[str, list[float]] = {label: [] for label in measures}
    counts: dict[str, str] = {}
    for round_number in range(1, repeats + 1):
        for label, measure in measures.items():
            # progress on stderr: a round of the default lines takes a minute or more
            print(f"round {round_number}/{repeats}: {label} ...", file=sys.stderr, flush=True)
            times[label].append(measure())
            counts[label] = sql.take(trials)
    per_trial = {label: statistics.median(values) for label, values in times.items()}
    reference = per_trial[REFERENCE]
    for label, seconds in per_trial.items():
        line = f"{label:34} {1000 * seconds:8.1f} ms/trial  {seconds / reference:5.2f}x"
        if label.startswith("sweep launch, local") and SUBMITIT_FLOOR in per_trial:
            line += f"  ({seconds / per_trial[SUBMITIT_FLOOR]:.2f}x plain submitit)"
        if label.endswith(("command", "callable")):
            executor = label.split(", ")[1]
            job = next(key for key in per_trial if key.startswith(f"sweep launch, {executor}, poll"))
            line += f"  ({seconds / per_trial[job]:.2f}x the no-op job)"
        print(line + ("" if "in memory" in label else counts[label]), flush=True)
    if args.report_trials:
        print(time_report(args.report_trials, repeats), flush=True)
    if args.profile:
        for executor in executors:
            for poll_s in (float(p) for p in args.poll_s.split(",")):
                time_launcher(trials, executor, poll_s, parallel=args.parallel, profile=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; no figures", file=sys.stderr)
        sys.exit(130)
