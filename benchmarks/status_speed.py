"""How long `sweep status` takes on a 10,000-trial study (target: under 2 s, the whole command).

The study is report_speed's (80% complete, 15% pruned, 5% failed; 4 params; 5 intermediate values
each; 20 trials with a run dir). `python -m sweep status --study bench` runs as a real subprocess a few
times, by default (the summary) and with `--all` (a line per trial).

    python benchmarks/status_speed.py [--trials 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `benchmarks` is then not importable by itself
    sys.path.insert(0, str(ROOT))

from benchmarks.report_speed import STUDY, make_study  # noqa: E402


def time_status(results: Path, *extra: str) -> tuple[float, float, int]:
    """Wall and CPU (user + system) seconds of one `python -m sweep status` subprocess, imports
    included, and its lines."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sweep", "status", "--study", STUDY, "--results-dir", str(results), *extra],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, len(done.stdout.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-all", action="store_true", help="time the default view only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp)
        made = make_study(results, args.trials)
        print(f"study: {args.trials:,} trials made in {made:.1f} s")
        views = [()] if args.skip_all else [(), ("--all",)]
        for extra in views:
            runs = [time_status(results, *extra) for _ in range(args.runs)]
            walls, cpus = [run[0] for run in runs], [run[1] for run in runs]
            print(
                f"sweep status {' '.join(extra) or '(default)'} on {args.trials:,} trials: {runs[0][2]:,} "
                f"lines, wall median {statistics.median(walls):.2f} s (min {min(walls):.2f} s), CPU median "
                f"{statistics.median(cpus):.2f} s over {args.runs} runs; target < 2 s; load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
            )


if __name__ == "__main__":
    main()
