"""Peak memory of a launcher against the size of its study (target: flat, not growing with the trials).

Each size runs `sweep launch` on a grid of N no-op trials (`benchmarks.noop_job.noop`, one metrics line
each) with the debug executor in a fresh Python process, and reports that process's peak RSS.

    python benchmarks/launcher_memory.py [--trials 200 800] [--shape line|cube]

`--shape line` (the default) is one parameter of N values; `cube` three parameters whose values multiply
to N (2,000 = 10 x 10 x 20). They differ on purpose: Optuna keeps every trial of a study in its storage
cache, each with its parameters' distributions, and a grid dimension's distribution lists all its
values, so a line of N values costs O(N) a trial (O(N^2) in all), a cube of N about N^(1/3).
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
from sweep.study import load_study
n, shape, sizes = int(sys.argv[1]), sys.argv[2], [int(size) for size in sys.argv[3:]]
with tempfile.TemporaryDirectory() as tmp:
    spec = study_spec(n, Path(tmp))
    if shape == "cube":
        space = chr(10).join(
            f"{key} = {[round(0.001 * (i + 1), 6) for i in range(size)]}"
            for key, size in zip(("lr", "weight_decay", "momentum"), sizes)
        )
        study_file = Path(tmp) / "overhead.toml"
        text = study_file.read_text()
        head, tail = text[: text.index("lr = [")], text[text.index("[resources]") :]
        study_file.write_text(head + space + chr(10) * 2 + tail)
        spec = load_study(study_file)
    summary = launch(spec, results_dir=Path(tmp) / "r", executor="debug", job=noop, out=lambda _: None,
                     read_every_s=0.01)
    assert summary.states.get("COMPLETE") == n, summary.states
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def cube(trials: int) -> list[int]:
    """Three sizes whose product is `trials`, as near its cube root as its divisors allow."""
    best = [1, 1, trials]
    for a in range(1, round(trials ** (1 / 3)) + 2):
        for b in range(a, round((trials / a) ** 0.5) + 2):
            if trials % (a * b) == 0 and trials // (a * b) >= b and max(a, b, trials // (a * b)) < max(best):
                best = [a, b, trials // (a * b)]
    return best


def peak_rss_mb(trials: int, shape: str = "line") -> tuple[float, float]:
    """Peak RSS (MB) of a launcher process that ran a `trials`-point grid, and its wall seconds."""
    start = time.perf_counter()
    sizes = [str(size) for size in cube(trials)] if shape == "cube" else []
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(trials), shape, *sizes], cwd=ROOT, capture_output=True, text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return int(done.stdout.split()[-1]) / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[200, 800])
    parser.add_argument("--shape", choices=("line", "cube"), default="line")
    args = parser.parse_args()
    for trials in args.trials:
        rss, wall = peak_rss_mb(trials, args.shape)
        shape = "x".join(map(str, cube(trials))) if args.shape == "cube" else "one parameter"
        print(
            f"launcher of a {trials:,}-trial grid ({shape}; debug executor, no-op jobs): "
            f"peak RSS {rss:.0f} MB, "
            f"{wall / trials * 1000:.0f} ms a trial; load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    main()
