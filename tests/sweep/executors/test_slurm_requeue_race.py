"""The requeue race on the real dev cluster (scripts/slurm-dev-cluster.sh): a program killed by a signal
while SLURM requeues its job stores a failure as the job's result, and the trial must still end
COMPLETE, trained once, the launcher watching the same job id.

The race is made deterministic: the program exits -15 itself (SIGTERM, default handler) once the test
says so, the job wrapper stores ProgramFailed("... exited with status -15") as the result and the job
ends FAILED; the test then requeues it with `scontrol requeue`, which SLURM does for a finished batch job
as for a running one (restart count 1, PENDING, run again under the same id). While it does, squeue on
the launcher's PATH waits (a wrapper that blocks while a `hold` file exists), so the launcher's first
look at SLURM after the result appeared comes after the requeue, as it would in the real race.
"""

# ruff: noqa: F811 (the tests take the imported fixtures as arguments)
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import deadline
from tests.sweep.conftest import ROOT, program_study, sweep_cmd, wait_for
from tests.sweep.executors.test_slurm import (  # noqa: F401 (slurm_cluster, study_jobs: fixtures)
    epochs_of,
    slurm_cluster,
    stored_trials,
    study_jobs,
)

pytestmark = pytest.mark.slow

# epoch 1, then (first start only) wait for the test's `go` and die of SIGTERM; epoch 2 on the next start
PROGRAM = """\
import json, os, signal, sys, time
gate, run_dir = sys.argv[1], os.environ["SWEEP_RUN_DIR"]

def log(epoch):
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as handle:
        handle.write(json.dumps({"epoch": epoch, "score": 0.1 * epoch}) + "\\n")

if os.environ["SWEEP_RESTART"] == "0":
    log(1)
    open(os.path.join(gate, "ready"), "w").close()
    while not os.path.exists(os.path.join(gate, "go")):
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)  # the default handler: the program exits -15
    time.sleep(60)
log(2)
"""


def _squeue_state(real: str, job_id: str) -> str:
    done = subprocess.run([real, "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return done.stdout.strip()


def test_a_program_killed_as_its_job_is_requeued_keeps_its_trial(
    tmp_path: Path, study_jobs: list[str]
) -> None:
    name = "rqrace"
    study_jobs.append(name)
    gate = tmp_path / "gate"
    gate.mkdir()
    (tmp_path / "prog.py").write_text(PROGRAM)
    study = program_study(tmp_path, name, [str(tmp_path / "prog.py"), str(gate)], epochs=2, lrs=[0.1])
    real = shutil.which("squeue")
    assert real is not None
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    (wrappers / "squeue").write_text(
        f'#!/bin/sh\nwhile [ -e {gate}/hold ]; do sleep 0.1; done\nexec {real} "$@"\n'
    )
    (wrappers / "squeue").chmod(0o755)
    results = tmp_path / "results"
    launcher = subprocess.Popen(
        sweep_cmd("launch", "--study", str(study), "--executor", "slurm", "--results-dir", str(results)),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PATH": f"{wrappers}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert launcher.stdout is not None
    lines: list[str] = []
    try:
        for line in launcher.stdout:
            lines.append(line)
            if "trial 0 submitted" in line:
                break
        assert lines and "trial 0 submitted  job " in lines[-1], "".join(lines)  # not an early end
        job_id = lines[-1].split("job ")[1].split()[0]
        wait_for(lambda: (gate / "ready").exists(), timeout=deadline(120), what="the program's first epoch")
        (gate / "hold").touch()  # the launcher's squeue waits from here
        (gate / "go").touch()  # the program dies of SIGTERM; the wrapper stores the failure; the job ends
        wait_for(
            lambda: _squeue_state(real, job_id) in ("FAILED", "COMPLETED"),
            timeout=deadline(60),
            what="the job to end",
        )
        result = results / "runs" / name / "0" / "submitit" / f"{job_id}_0_result.pkl"
        assert result.exists()  # the failure stored as the job's result: the race's first half
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=deadline(30))
    finally:
        with contextlib.suppress(FileNotFoundError):
            (gate / "hold").unlink()
    rest, _ = launcher.communicate(timeout=deadline(300))
    out = "".join(lines) + rest
    assert launcher.returncode == 0, out
    (trial,) = stored_trials(results, name)
    assert trial.state.name == "COMPLETE" and trial.user_attrs["submissions"] == 1, out
    assert trial.user_attrs["job_id"] == job_id  # the same job, watched through its requeue
    run_dir = results / "runs" / name / "0"
    assert epochs_of(run_dir) == [1, 2]  # trained once: the second start resumed, nothing ran twice
    assert (run_dir / "program.starts").read_text().strip() == "2"
    assert f"trial 0 job {job_id} requeued by SLURM (restart 1), not by its own checkpoint" in out, out
    assert "failed" not in out, out
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [a["slurm_restart_count"] for a in manifest["attempts"]] == [None, 1]
