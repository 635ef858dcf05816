"""How hard a launcher leans on slurmctld: every SLURM command it runs, counted, on the dev cluster.

    python benchmarks/slurm_calls.py [--trials 30] [--parallel 10] [--seconds 60] [--project DIR] [--plain]

Runs `sweep launch --executor slurm` of a grid of --trials `[program]` trials (each logs an epoch every
5 s for --seconds) with --parallel jobs at once, with wrappers first on PATH that log every call of
sbatch, squeue, sacct, scancel and scontrol (its time and name) before running the real command. Prints,
for each command, its calls a minute over the launch and the most calls within one second; the time from
a job's end (its result file) to the launcher's next submission (median, max); and the launcher's CPU
seconds (its own and its children's: the SLURM commands) and peak memory. Targets (issue 22): squeue +
sacct at most 2 a minute in steady state whatever the number of trials, no second with more than 5
sbatch calls, slots refilled within the poll interval, the launcher under 5% of a core.

`--plain` runs the same jobs through plain submitit instead (its SlurmExecutor, `job.done()` polled
every second: submitit's own watcher decides when to ask sacct), the floor to compare with: what a
hand-written submitit loop costs the scheduler, with no study database and no pruning.

The dev cluster must run (`bash scripts/slurm-dev-cluster.sh start`); jobs beyond its CPUs wait PENDING
(they are watched all the same). `--project DIR` measures another checkout of sweep (its `main`, for
the figures before a change).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "scontrol")
PROGRAM = """\
import json, os, sys, time
seconds = float(sys.argv[1])
epochs = max(1, round(seconds / 5))
for epoch in range(1, epochs + 1):
    time.sleep(seconds / epochs)
    with open(os.path.join(os.environ["SWEEP_RUN_DIR"], "metrics.jsonl"), "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "score": epoch}) + "\\n")
"""


def wrappers(folder: Path, log: Path) -> Path:
    """A folder of scripts named like the SLURM commands that log each call, then run the real one."""
    folder.mkdir(parents=True)
    for name in COMMANDS:
        real = shutil.which(name)
        if real is None:
            raise SystemExit(f"slurm_calls: no {name} on PATH; start the dev cluster first")
        script = folder / name
        script.write_text(f'#!/bin/sh\necho "$(date +%s.%N) {name}" >> {log}\nexec {real} "$@"\n')
        script.chmod(0o755)
    return folder


def study_file(folder: Path, trials: int, seconds: float) -> Path:
    (folder / "prog.py").write_text(PROGRAM)
    lrs = [round(0.001 * (i + 1), 6) for i in range(trials)]
    path = folder / "calls.toml"
    path.write_text(
        '[study]\nname = "calls"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
        f"[train]\nepochs = {max(1, round(seconds / 5))}\n[space]\nlr = {lrs}\n"
        "[resources]\ngpus = 0\ncpus = 1\ntimeout_min = 30\n"
        f'[program]\ncommand = ["{sys.executable}", "{folder / "prog.py"}", "{seconds}"]\n'
    )
    return path


PLAIN = """\
import os, subprocess, sys, time
from pathlib import Path
import submitit

prog, seconds, folder = sys.argv[1], sys.argv[2], Path(sys.argv[5])
trials, parallel = int(sys.argv[3]), int(sys.argv[4])


def run(run_dir):
    env = {**os.environ, "SWEEP_RUN_DIR": run_dir}
    subprocess.run([sys.executable, prog, seconds], env=env, check=True)


executor = submitit.SlurmExecutor(folder=folder / "submitit")
executor.update_parameters(nodes=1, ntasks_per_node=1, cpus_per_task=1, time=30)
pending, running = list(range(trials)), []
while pending or running:
    while pending and len(running) < parallel:
        run_dir = folder / "runs" / "calls" / str(pending.pop(0))
        run_dir.mkdir(parents=True)
        running.append(executor.submit(run, str(run_dir)))
    running = [job for job in running if not job.done()]
    time.sleep(1)
"""


def plain_command(folder: Path, args: argparse.Namespace) -> list[str]:
    """The same study's jobs through plain submitit (`--plain`): no database, no pruning."""
    (folder / "plain.py").write_text(PLAIN)
    return [sys.executable, str(folder / "plain.py"), str(folder / "prog.py"), str(args.seconds),
            str(args.trials), str(args.parallel), str(folder / "results")]  # fmt: skip


def refill_gaps(results: Path) -> list[float]:
    """Seconds from each job's end (its submitit result file) to the next submission after it."""
    runs = results / "runs" / "calls"
    ends = sorted(p.stat().st_mtime for p in runs.glob("*/submitit/*_result.pkl"))
    starts = sorted(p.stat().st_mtime for p in runs.glob("*/submitit/*_submission.sh"))
    gaps = []
    for end in ends:
        later = [start for start in starts if start >= end]
        if later:
            gaps.append(later[0] - end)
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0, help="each trial's run time")
    parser.add_argument("--project", type=Path, default=ROOT, help="the sweep checkout to measure")
    parser.add_argument(
        "--plain", action="store_true", help="the same jobs through plain submitit: the floor"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sweep-slurm-calls-"))
    try:
        log = folder / "calls.log"
        bin_dir = wrappers(folder / "bin", log)
        path = study_file(folder, args.trials, args.seconds)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(args.project)}
        command = [sys.executable, "-m", "sweep", "launch", "--study", str(path), "--executor", "slurm",
                   "--parallel", str(args.parallel), "--results-dir", str(folder / "results")]  # fmt: skip
        if args.plain:
            command = plain_command(folder, args)
        started = time.monotonic()
        with (folder / "launch.log").open("w") as out:
            process = subprocess.Popen(
                command, cwd=args.project, env=env, stdout=out, stderr=subprocess.STDOUT
            )
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        if status != 0:
            tail = (folder / "launch.log").read_text().strip().splitlines()[-3:]
            raise SystemExit(f"slurm_calls: the launch exited {status >> 8}: {' | '.join(tail)}")
        calls = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=args.project, capture_output=True, text=True
        ).stdout.strip()
        what = "plain submitit" if args.plain else f"commit {commit}"
        print(
            f"{args.trials} trials of {args.seconds:g} s, --parallel {args.parallel}: {wall:.0f} s of launch "
            f"({what})"
        )
        for name in COMMANDS:
            times = [float(stamp) for stamp, called in calls if called == name]
            per_second = collections.Counter(int(t) for t in times)
            print(
                f"  {name:<9} {len(times):>5} calls  {60 * len(times) / wall:6.1f} a minute  "
                f"most in one second {max(per_second.values(), default=0)}"
            )
        gaps = refill_gaps(folder / "results")
        if gaps:
            print(
                f"  job end to next submission: median {statistics.median(gaps):.1f} s, max {max(gaps):.1f} s"
            )
        cpu = usage.ru_utime + usage.ru_stime
        print(
            f"  launcher CPU {cpu:.1f} s ({100 * cpu / wall:.1f}% of a core, its SLURM commands included), "
            f"peak RSS {usage.ru_maxrss / 1024:.0f} MB"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
