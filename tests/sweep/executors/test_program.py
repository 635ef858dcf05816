"""A program's job: stopped as a whole process group, however stubborn the program is."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sweep import procs
from sweep.executors.base import Job
from sweep.executors.local import LocalExecutor
from sweep.executors.program import ProgramJob
from sweep.study.spec import Program, Resources
from tests.conftest import deadline
from tests.sweep.conftest import wait_for

# Ignores SIGTERM, starts a child that ignores it too, logs one epoch, then trains "forever".
STUBBORN = """\
import json, os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
with open(os.path.join(os.environ["SWEEP_RUN_DIR"], "metrics.jsonl"), "a") as handle:
    handle.write(json.dumps({"epoch": 1, "score": 0.5}) + "\\n")
time.sleep(600)
"""


def start_stubborn(tmp_path: Path) -> tuple[Job, int]:
    """A local job of STUBBORN (stop_grace_s 1 s) once it logged an epoch and forked: the job, and the
    program's process group."""
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    program = Program(command=(sys.executable, "stubborn.py"), workdir=str(tmp_path), stop_grace_s=1.0)
    run_dir = tmp_path / "runs" / "s" / "0"
    run_dir.mkdir(parents=True)
    job = LocalExecutor(Resources(gpus=0)).submit(ProgramJob(program, "score"), {"lr": 0.1}, run_dir)
    wait_for(lambda: (run_dir / "metrics.jsonl").exists(), timeout=deadline(60), what="the first epoch")
    pgid = int((run_dir / "program.pid").read_text().split()[0])
    wait_for(lambda: len(procs.group_members(pgid)) >= 2, timeout=deadline(30), what="the program's child")
    return job, pgid


def test_a_pruned_program_that_ignores_sigterm_and_forks_leaves_no_process_of_its_group(
    tmp_path: Path,
) -> None:
    job, pgid = start_stubborn(tmp_path)
    started = time.monotonic()
    job.cancel()  # what a prune does
    assert procs.group_members(pgid) == []
    assert job.done()
    print(f"stopped in {time.monotonic() - started:.1f} s")
