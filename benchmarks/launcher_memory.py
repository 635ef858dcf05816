"""Peak memory of a launcher against the size of its study (target: flat, not growing with the trials).

Each size runs `sweep launch` on a grid of N no-op trials (`benchmarks.noop_job.noop`, one metrics line
each) with the debug executor in a fresh Python process, and reports that process's peak RSS.

    python benchmarks/launcher_memory.py [--trials 200 800]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import resource, sys, tempfile
from pathlib import Path
from benchmarks.noop_job import noop
from benchmarks.overhead import study_spec
from sweep.launcher import launch
n = int(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    spec = study_spec(n, Path(tmp))
    summary = launch(spec, results_dir=Path(tmp) / "r", executor="debug", job=noop, out=lambda _: None,
                     poll_s=0.01)
    assert summary.states.get("COMPLETE") == n, summary.states
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(trials: int) -> tuple[float, float]:
    """Peak RSS (MB) of a launcher process that ran a `trials`-point grid, and its wall seconds."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(trials)], cwd=ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return int(done.stdout.split()[-1]) / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[200, 800])
    args = parser.parse_args()
    for trials in args.trials:
        rss, wall = peak_rss_mb(trials)
        print(
            f"launcher of a {trials:,}-trial grid (debug executor, no-op jobs): peak RSS {rss:.0f} MB, "
            f"{wall / trials * 1000:.0f} ms a trial; load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    main()
