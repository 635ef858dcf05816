"""A requeue storm on the dev cluster: `scontrol requeue` of a study's running jobs, again and again, while
`sweep launch` watches them; then whether every trial still ended COMPLETE, trained each epoch once, and
ran as one job.

    python benchmarks/requeue_storm.py [--trials 20] [--epochs 8] [--epoch-s 2] [--per-job 9]
                                       [--deaf] [--stop-launcher]

The program is a user's own (`[program]`): it logs one epoch each --epoch-s seconds and, started again,
resumes after the last epoch in its metrics.jsonl. Each round requeues every RUNNING job of the study that
has run for a second and been requeued fewer than --per-job times (sweep's own limit is 20). `--deaf`: the
program ignores SIGTERM, so SLURM kills it after KillWait. `--stop-launcher`: halfway through the storm
the launcher is stopped (SIGINT: its jobs go on), every running job is requeued while no launcher
watches, and a second `sweep launch` re-attaches. Prints the requeues sent and survived, the trials that
failed, the epochs run twice or missing, and the wall time. The figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = """\
import json, os, pathlib, signal, sys, time
if sys.argv[1] == "deaf":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # SLURM's SIGKILL after KillWait ends it
params = json.loads(pathlib.Path(os.environ["SWEEP_PARAMS"]).read_text())
metrics = pathlib.Path(os.environ["SWEEP_RUN_DIR"]) / "metrics.jsonl"
lines = metrics.read_text().splitlines() if metrics.exists() else []
done = [json.loads(line)["epoch"] for line in lines if line.endswith("}")]
for epoch in range((done[-1] if done else 0) + 1, params["epochs"] + 1):
    time.sleep(params["seconds"])
    with open(metrics, "a") as handle:  # one write of one line: whole or not at all
        handle.write(json.dumps({"epoch": epoch, "score": params["lr"] * epoch}) + "\\n")
"""


def study_file(folder: Path, name: str, *, trials: int, epochs: int, epoch_s: float, deaf: bool) -> Path:
    (folder / "prog.py").write_text(PROGRAM)
    lrs = [round(0.01 * (k + 1), 2) for k in range(trials)]
    ear = "deaf" if deaf else "hears"
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
        f"[train]\nepochs = {epochs}\nseconds = {epoch_s}\n[space]\nlr = {lrs}\n"
        "[resources]\ngpus = 0\ncpus = 1\ntimeout_min = 30\n[waits]\nslurm_query_s = 1\n"
        f'[program]\ncommand = ["{sys.executable}", "{folder / "prog.py"}", "{ear}"]\n'
    )
    return path


def launch(path: Path, results: Path, log: Path, parallel: int) -> subprocess.Popen[bytes]:
    with log.open("a") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "sweep", "launch", "--study", str(path), "--executor", "slurm",
             "--parallel", str(parallel), "--results-dir", str(results)],
            cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def running_jobs(name: str) -> list[tuple[str, int, int]]:
    """(job id, restart count, seconds run) of each RUNNING job of the study."""
    listed = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i %j"], capture_output=True, text=True, timeout=60
    ).stdout.split("\n")
    jobs = []
    for line in listed:
        if not line.strip() or not line.split()[1].startswith(f"sweep-{name}-"):
            continue
        job_id = line.split()[0]
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
        fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
        run_time = [int(part) for part in fields.get("RunTime", "0:0:0").replace("-", ":").split(":")]
        seconds = sum(value * 60**k for k, value in enumerate(reversed(run_time)))
        jobs.append((job_id, int(fields.get("Restarts", "0")), seconds))
    return jobs


def requeue_round(name: str, per_job: int) -> int:
    sent = 0
    for job_id, restarts, seconds in running_jobs(name):
        if restarts < per_job and seconds >= 1:
            done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
            sent += done.returncode == 0
    return sent


def epochs_of(run_dir: Path) -> list[int]:
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    return [json.loads(line)["epoch"] for line in lines if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--epoch-s", type=float, default=2.0)
    parser.add_argument("--per-job", type=int, default=9, help="requeues of one job at most")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between rounds")
    parser.add_argument("--deaf", action="store_true", help="the program ignores SIGTERM")
    parser.add_argument("--stop-launcher", action="store_true", help="requeue while no launcher watches")
    args = parser.parse_args()
    name = "storm" + ("deaf" if args.deaf else "") + ("stop" if args.stop_launcher else "")
    folder = Path(tempfile.mkdtemp(prefix="sweep-requeue-storm-"))
    results, log = folder / "results", folder / "launch.out"
    path = study_file(folder, name, trials=args.trials, epochs=args.epochs, epoch_s=args.epoch_s,
                      deaf=args.deaf)  # fmt: skip
    parallel = 4
    start = time.monotonic()
    launcher = launch(path, results, log, parallel)
    sent = rounds = 0
    stopped_at: int | None = None
    try:
        while launcher.poll() is None:
            time.sleep(args.every)
            sent += requeue_round(name, args.per_job)
            rounds += 1
            if args.stop_launcher and stopped_at is None and sent >= args.trials * args.per_job // 2:
                launcher.send_signal(signal.SIGINT)  # Ctrl-C: the launcher goes, its jobs train on
                launcher.wait(timeout=120)
                stopped_at = sent
                sent += requeue_round(name, args.per_job)  # requeued while nobody watches
                time.sleep(args.every)
                launcher = launch(path, results, log, parallel)
            print(f"  {time.monotonic() - start:6.0f} s  round {rounds}: {sent} requeues sent", flush=True)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGINT)
    wall = time.monotonic() - start
    out = log.read_text()

    import optuna  # noqa: PLC0415 (after the storm: the launcher's import is not timed here)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{results}/sweep.db")
    trials = study.get_trials()
    states = [t.state.name for t in trials]
    twice = missing = 0
    for trial in trials:
        seen = epochs_of(results / "runs" / name / str(trial.number))
        twice += len(seen) - len(set(seen))
        missing += len(set(range(1, args.epochs + 1)) - set(seen))
    submissions = [t.user_attrs.get("submissions") for t in trials]
    said = out.count("requeued by SLURM")
    watched = f"stopped at requeue {stopped_at}" if args.stop_launcher else "watching throughout"
    print(f"program {'deaf to SIGTERM' if args.deaf else 'default SIGTERM'}, launcher {watched}")
    print(f"requeues sent: {sent} in {rounds} rounds over {wall:.0f} s; 'requeued by SLURM' lines: {said}")
    print(
        f"trials: {len(trials)} of {args.trials}, {states.count('COMPLETE')} COMPLETE, "
        f"{states.count('FAIL')} FAIL; submissions per trial: {sorted(set(map(str, submissions)))}"
    )
    print(f"epochs run twice: {twice}; epochs missing: {missing}; launcher exit: {launcher.returncode}")
    print(f"lines with 'failed': {sum('failed' in line for line in out.splitlines())}; log: {log}")


if __name__ == "__main__":
    main()
