"""A long scheduler outage under a running study, on the dev cluster: slurmctld stopped for --outage-s
seconds while trials train; then how late the launcher recorded each trial that ended meanwhile, the
trials it pruned meanwhile, and how the study ended.

    python benchmarks/controller_outage.py [--outage-s 120] [--trials 8] [--epochs 12] [--epoch-s 2]

The program is a user's own (`[program]`, median pruner after one complete trial): lr values alternate
good and bad, the bad ones twice as slow an epoch, so they fall below the median of the good ones that
end first and are pruned. The controller is stopped once four
trials train; while it is away the launcher can submit nothing (its sbatch is held), but it still reads the
run dirs. Prints, for the trials that ended during the outage, the delay between their last epoch line
and their end in the study (the launcher's record), and the outage as the launcher said it. Restores the
controller in any case. The figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm-dev-cluster.sh"

PROGRAM = """\
import json, os, pathlib, sys, time
params = json.loads(pathlib.Path(os.environ["SWEEP_PARAMS"]).read_text())
metrics = pathlib.Path(os.environ["SWEEP_RUN_DIR"]) / "metrics.jsonl"
done = len(metrics.read_text().splitlines()) if metrics.exists() else 0
for epoch in range(done + 1, params["epochs"] + 1):
    time.sleep(params["seconds"] * (1 if params["lr"] >= 0.5 else 2))  # the bad ones are slow too
    with open(metrics, "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "score": params["lr"] * epoch}) + "\\n")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage-s", type=float, default=120.0)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--epoch-s", type=float, default=2.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sweep-controller-outage-"))
    (folder / "prog.py").write_text(PROGRAM)
    lrs = [round(0.5 + 0.01 * k if k % 2 == 0 else 0.1 + 0.01 * k, 2) for k in range(args.trials)]
    path = folder / "outage.toml"
    path.write_text(
        '[study]\nname = "outage"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n'
        'pruner = "median"\npruner_startup_trials = 1\n'
        f"[train]\nepochs = {args.epochs}\nseconds = {args.epoch_s}\n[space]\nlr = {lrs}\n"
        "[resources]\ngpus = 0\ncpus = 1\ntimeout_min = 30\n[waits]\nslurm_query_s = 1\n"
        f'[program]\ncommand = ["{sys.executable}", "{folder / "prog.py"}"]\n'
    )
    results, log = folder / "results", folder / "launch.out"
    with log.open("w") as handle:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "sweep", "launch", "--study", str(path), "--executor", "slurm",
             "--parallel", "4", "--results-dir", str(results)],
            cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
    runs = results / "runs" / "outage"
    while sum((runs / str(n) / "metrics.jsonl").exists() for n in range(4)) < 4:
        time.sleep(0.2)
    subprocess.run(["bash", str(SCRIPT), "stop-controller"], check=True)
    stopped = time.time()
    try:
        time.sleep(args.outage_s)
    finally:
        subprocess.run(["bash", str(SCRIPT), "start-controller"], check=True)
    back = time.time()
    launcher.wait(timeout=1800)
    out = log.read_text()

    import optuna  # noqa: PLC0415 (after the run: its import is not part of it)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name="outage", storage=f"sqlite:///{results}/sweep.db").get_trials()
    delays, pruned_during = [], 0
    for trial in trials:
        metrics = runs / str(trial.number) / "metrics.jsonl"
        ended = trial.datetime_complete.timestamp() if trial.datetime_complete else None
        if ended is None or not stopped <= ended <= back:
            continue
        if trial.state.name == "PRUNED":
            pruned_during += 1
        else:
            delays.append(ended - metrics.stat().st_mtime)
    states = [t.state.name for t in trials]
    print(f"controller away {back - stopped:.0f} s; launcher exit {launcher.returncode}; log {log}")
    print(f"trials: {states.count('COMPLETE')} COMPLETE, {states.count('PRUNED')} PRUNED, "
          f"{states.count('FAIL')} FAIL of {len(trials)}")  # fmt: skip
    print(f"during the outage: {len(delays)} ends recorded, {pruned_during} trials pruned")
    if delays:
        mean = sum(delays) / len(delays)
        print(f"end recorded after the last epoch: max {max(delays):.2f} s, mean {mean:.2f} s")
    said = [line for line in out.splitlines() if line.startswith("slurm: ")]
    print("launcher's slurm lines:\n  " + "\n  ".join(said))


if __name__ == "__main__":
    main()
