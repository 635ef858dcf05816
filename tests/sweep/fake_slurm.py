"""A fake SLURM on PATH whose jobs run until scancel, then leave squeue a set time later (a cluster's
KillWait), and whose every call is logged with its time: for counting how often a command that waits on
SLURM asks it (as benchmarks/slurm_calls.py counts a launcher's calls on the real cluster)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SQUEUE = """\
import os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "squeue.calls"), "a") as log:
    log.write(f"{time.monotonic()} {' '.join(sys.argv[1:])}\\n")
if os.path.exists(os.path.join(here, "squeue.err")):  # the controller does not answer
    sys.stderr.write(open(os.path.join(here, "squeue.err")).read())
    sys.exit(1)
ids = sys.argv[sys.argv.index("-j") + 1].split(",") if "-j" in sys.argv else []
try:
    cancelled = float(open(os.path.join(here, "scancel.at")).read())
    gone = time.monotonic() >= cancelled + float(open(os.path.join(here, "gone_after_s")).read())
except (OSError, ValueError):
    gone = False
for job_id in ids:
    print(f"{job_id}|{'CANCELLED' if gone else 'RUNNING'}|None")
"""

SCANCEL = """\
import os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "scancel.calls"), "a") as log:
    log.write(f"{time.monotonic()} {' '.join(sys.argv[1:])}\\n")
if not os.path.exists(os.path.join(here, "scancel.at")):
    with open(os.path.join(here, "scancel.at"), "w") as at:
        at.write(str(time.monotonic()))
"""

OTHER = """\
import os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "{name}.calls"), "a") as log:
    log.write(f"{{time.monotonic()}} {{' '.join(sys.argv[1:])}}\\n")
"""


def install(bin_dir: Path, monkeypatch: pytest.MonkeyPatch, *, gone_after_s: float) -> Path:
    """squeue, scancel, sacct and sbatch in `bin_dir`, first on PATH: every job squeue is asked about
    runs until the first scancel, and reads CANCELLED `gone_after_s` seconds after it."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    scripts = {"squeue": SQUEUE, "scancel": SCANCEL}
    scripts.update({name: OTHER.format(name=name) for name in ("sacct", "sbatch")})
    for name, body in scripts.items():
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\n{body}")
        script.chmod(0o755)
    (bin_dir / "gone_after_s").write_text(str(gone_after_s))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir


def call_times(bin_dir: Path, name: str) -> list[float]:
    """The monotonic times of each call of `name`."""
    path = bin_dir / f"{name}.calls"
    lines = path.read_text().splitlines() if path.exists() else []
    return [float(line.split()[0]) for line in lines]


def most_in_one_second(times: list[float]) -> int:
    """The most calls within any one second (a sliding window)."""
    return max((sum(1 for t in times if start <= t < start + 1.0) for start in times), default=0)
