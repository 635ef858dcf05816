"""How hard `sweep cancel` and `sweep status --watch` lean on slurmctld: their SLURM calls, counted on the
dev cluster with benchmarks/slurm_calls.py's logging wrappers.

    python benchmarks/command_calls.py cancel [--jobs 20] [--project DIR]
    python benchmarks/command_calls.py watch [--jobs 2] [--seconds 120] [--project DIR]

`cancel` submits --jobs jobs that ignore SIGTERM (so the cluster's KillWait applies to those that run;
the rest wait PENDING), stores them as a study's RUNNING trials, and times `sweep cancel` with every
squeue, sacct and scancel call logged. `watch` runs `sweep status --watch` (stdout to a file, the default
--interval of 2 s) on a study of --jobs running jobs for --seconds, then stops it. Both print each
command's calls and the most within one second. `--project DIR` measures another checkout of sweep (its
`main`, for the figures before a change). Targets (issue 34): cancel at most 1 squeue a second; the
watch at most one squeue per `[waits] slurm_query_s` (30 s).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.slurm_calls import ROOT, wrappers  # noqa: E402

STORE = """\
import sys
import optuna
from sweep.store import records
results, name, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
study = optuna.create_study(study_name=name, storage=f"sqlite:///{results}/sweep.db")
for number, job_id in enumerate(ids):
    records.write(study.ask(), executor="slurm", job_id=job_id, run_dir=f"{results}/runs/{name}/{number}")
"""


def submit(jobs: int, script: str) -> list[str]:
    ids = []
    for _ in range(jobs):
        done = subprocess.run(
            ["sbatch", "--parsable", "-c", "1", "--mem=50M", "-o", "/dev/null", "--wrap", script],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        ids.append(done.stdout.strip().split(";")[0])
    return ids


def counts(log: Path) -> str:
    calls = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    said = []
    for name in ("squeue", "sacct", "scancel"):
        times = [float(stamp) for stamp, called in calls if called == name]
        most = max(collections.Counter(int(t) for t in times).values(), default=0)
        said.append(f"{name} {len(times)} (most in one second {most})")
    return ", ".join(said)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("cancel", "watch"))
    parser.add_argument("--jobs", type=int, help="default: 20 for cancel, 2 for watch")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the watch runs")
    parser.add_argument("--project", type=Path, default=ROOT, help="the sweep checkout to measure")
    args = parser.parse_args()
    jobs = args.jobs or (20 if args.command == "cancel" else 2)
    folder = Path(tempfile.mkdtemp(prefix="sweep-command-calls-"))
    env = {**os.environ, "PYTHONPATH": str(args.project)}
    ids: list[str] = []
    try:
        results = folder / "results"
        results.mkdir()
        # the cancelled jobs ignore SIGTERM: those that run leave squeue after KillWait, as on a cluster
        ids = submit(jobs, "trap '' TERM; sleep 600 & wait; sleep 600")
        (folder / "store.py").write_text(STORE)
        subprocess.run(
            [sys.executable, str(folder / "store.py"), str(results), "calls", *ids], env=env, check=True
        )
        log = folder / "calls.log"
        env["PATH"] = f"{wrappers(folder / 'bin', log)}:{os.environ['PATH']}"
        command = [
            sys.executable,
            "-m",
            "sweep",
            *(["cancel"] if args.command == "cancel" else ["status", "--watch"]),
        ]
        command += ["--study", "calls", "--results-dir", str(results)]
        started = time.monotonic()
        with (folder / "out.log").open("w") as out:
            process = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
            if args.command == "watch":
                time.sleep(args.seconds)
                process.send_signal(signal.SIGTERM)  # SIGINT: ignored under a background shell
            process.wait()
        wall = time.monotonic() - started
        what = "sweep cancel" if args.command == "cancel" else f"sweep status --watch ({args.seconds:g} s)"
        what += f" of {jobs} SLURM jobs"
        print(f"{what}: {wall:.1f} s, exit {process.returncode}, project {args.project}")
        print(f"  {counts(log)}")
    finally:
        if ids:
            subprocess.run(["scancel", *ids], check=False)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
