"""`sweep launch --detach`: the launcher leaves the terminal and runs on its own.

With the slurm executor the launcher becomes a small SLURM job of its own ([detached]: one
CPU, 2 GiB by default). It is a checkpointable submitit job: at its time limit or on preemption it
requeues itself, and the launcher that starts again re-attaches to its trials (the restart a launch
always does), so a study may outlast any one job's time limit. Elsewhere it is a background process
in a session of its own (it survives the shell's exit and hang-up), its output in
`DIR/NAME.launcher.log`.

The study records where its launcher runs (`sweep.store.records.DetachedLauncher`); a second `--detach`
while that launcher lives is refused, `sweep cancel` stops it, `sweep status` and `sweep logs
--launcher` find it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from sweep import procs
from sweep.detached import DETACHED_ENV, alive, describe, time_text
from sweep.errors import Printer, StudyStopped, SweepError, run_command
from sweep.executors.base import SubmitHeld
from sweep.executors.files import log_paths
from sweep.executors.slurm import slurm_mem
from sweep.executors.slurm_submit import Submitter
from sweep.launcher import Prepared, launch
from sweep.store import owners, records
from sweep.store.records import DetachedLauncher, StudyRecord
from sweep.study.files import load_study
from sweep.study.spec import StudySpec

STORAGE_ENV = "SWEEP_STORAGE"  # --storage, passed in the environment: a password stays off `ps`
LAUNCHERS_DIR = "launchers"  # DIR/launchers/NAME/: a SLURM launcher's job files and logs
MAX_LAUNCHER_REQUEUES = 1000  # time limits a SLURM launcher may pass through (each is a requeue)
# What submitit's SLURM job environment reads (its requeue at a time limit among others)
SUBMITIT_SLURM_VARIABLES = frozenset(
    {
        "SLURM_JOB_ID",
        "SLURM_NTASKS",
        "SLURM_JOB_NUM_NODES",
        "SLURM_NODEID",
        "SLURM_JOB_NODELIST",
        "SLURM_PROCID",
        "SLURM_LOCALID",
        "SLURM_ARRAY_JOB_ID",
        "SLURM_ARRAY_TASK_ID",
    }
)


def log_file(results_dir: Path, study: str) -> Path:
    """Where a local detached launcher's output goes: DIR/NAME.launcher.log."""
    return Path(results_dir).absolute() / f"{study}.launcher.log"


def detach(
    spec: StudySpec,
    study_file: Path,
    prepared: Prepared,
    *,
    results_dir: Path,
    storage_url: str | None,
    executor: str,
    parallel: int,
    budget_gpu_hours: float | None = None,
    out: Printer = print,
) -> DetachedLauncher:
    """Start the launcher of a study that `sweep.launcher.prepare` checked and stored, detached, and
    return where it runs.

    Raises:
        SweepError: A detached launcher of the study still runs, or sbatch refused the launcher's job.
    """
    kind = "slurm" if executor == "slurm" or (executor == "auto" and shutil.which("sbatch")) else "local"
    study = prepared.study
    current = StudyRecord.of(study).detached
    if current is not None and alive(current):
        raise SweepError(
            f"study '{spec.name}': its detached launcher still runs ({describe(current)}); follow it with "
            f"`sweep logs --study {spec.name} --launcher --follow`, stop it with "
            f"`sweep cancel --study {spec.name}`"
        )
    request = DetachedLaunch(
        study_file=str(study_file.absolute()),
        results_dir=str(Path(results_dir).absolute()),
        executor=prepared.executor.name,
        parallel=parallel,
        budget_gpu_hours=budget_gpu_hours,
    )
    env = {DETACHED_ENV: kind}
    if storage_url is not None:
        env[STORAGE_ENV] = storage_url
    if kind == "slurm":
        started = _start_slurm(spec, LauncherJob(request, env), Path(results_dir), out)
    else:
        started = _start_local(request, env, log_file(Path(results_dir), spec.name))
    records.write_detached(study, started)
    where = (
        f"SLURM job {started.job_id} (its output: {started.log})"
        if kind == "slurm"
        else f"process {started.pid} on {started.host} (its output: {started.log})"
    )
    out(f"{spec.name}: the launcher runs detached as {where}")
    out(
        f"follow it: sweep logs --study {spec.name} --launcher --follow; progress: sweep status --study "
        f"{spec.name}; stop it and its trials: sweep cancel --study {spec.name}"
    )
    return started


@dataclass(frozen=True)
class DetachedLaunch:
    """What a detached launcher runs: `sweep launch` of a study file with these settings (the storage
    comes in the environment, STORAGE_ENV, so that a password stays off `ps`)."""

    study_file: str
    results_dir: str
    executor: str
    parallel: int
    budget_gpu_hours: float | None = None

    def run(self) -> int:
        """Launch the study to the end, as `sweep launch` would; its exit status (1: the study stopped)."""
        try:
            launch(
                load_study(self.study_file),
                results_dir=Path(self.results_dir),
                storage_url=os.environ.get(STORAGE_ENV) or None,
                executor=self.executor,
                parallel=self.parallel,
                budget_gpu_hours=self.budget_gpu_hours,
                on_start=record_detached_run,
            )
        except StudyStopped as stopped:  # the study's trials failed, not the launcher: exit 1
            print(f"error: {stopped}", file=sys.stderr, flush=True)
            return 1
        return 0


def _start_local(request: DetachedLaunch, env: dict[str, str], log: Path) -> DetachedLauncher:
    """A background launcher in a session of its own (no terminal: no hang-up, no Ctrl-C)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as output:
        output.write(f"== sweep launch --detach, {time_text(time.time())} ==\n")
        output.flush()
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, json.dumps(dataclasses.asdict(request))],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env},
        )
    return DetachedLauncher(
        kind="local",
        log=str(log),
        since=time.time(),
        host=socket.gethostname(),
        pid=process.pid,
        started=procs.start_ticks(process.pid),
    )


class LauncherJob(Checkpointable):
    """A detached launcher as a SLURM job: the launch `request` with the given environment.

    Checkpointable: at the job's time limit (submitit's signal) or on preemption submitit requeues it,
    and the launcher starting again re-attaches to the study's running trials.
    """

    def __init__(self, request: DetachedLaunch, env: dict[str, str]) -> None:
        self.request = request
        self.env = env

    def __call__(self) -> int:
        os.environ.update(self.env)
        # The trials' sbatch calls pass this job's environment on (--export=ALL), and a job that
        # inherits this allocation's settings fails at its srun ("SLURM_MEM_PER_CPU, SLURM_MEM_PER_GPU,
        # and SLURM_MEM_PER_NODE are mutually exclusive"): drop them, keeping what submitit reads to
        # requeue this job (its id and rank variables; each trial's job gets its own of those).
        for name in [name for name in os.environ if name.startswith(("SLURM_", "SBATCH_"))]:
            if name not in SUBMITIT_SLURM_VARIABLES:
                del os.environ[name]
        status = run_command(self.request.run, interrupted="")
        if status != 0:  # the job's state says so: FAILED in sacct, not COMPLETED
            raise SystemExit(status)
        return status

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        return DelayedSubmission(LauncherJob(self.request, self.env))


def _start_slurm(spec: StudySpec, job: LauncherJob, results_dir: Path, out: Printer) -> DetachedLauncher:
    """sbatch the launcher's own job through the Submitter a trial's goes through: paced, a transient
    failure retried for up to [waits] scheduler_outage_min, a job sbatch took before it timed out
    adopted, not submitted twice."""
    folder = Path(results_dir).absolute() / LAUNCHERS_DIR / spec.name
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_LAUNCHER_REQUEUES)
    wanted = spec.detached
    parameters: dict[str, Any] = {
        "job_name": f"sweep-launcher-{spec.name}",
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": wanted.cpus,
        "mem": slurm_mem(wanted.mem_gb),
    }
    if wanted.time_min is not None:
        parameters["time"] = wanted.time_min
    if wanted.partition is not None:
        parameters["partition"] = wanted.partition
    executor.update_parameters(**parameters)
    submitter = Submitter(spec.waits.scheduler_outage_min * 60, out)
    what = f"of the launcher ([detached] of {spec.source})"
    try:
        job_id = submitter.submit(executor, job, (), str(parameters["job_name"]), what=what)
    except SubmitHeld as limit:
        raise SweepError(
            f"the launcher's job {what} was refused by a submission limit ({limit}); let one of your jobs "
            "end, then `sweep launch --detach` again"
        ) from None
    return DetachedLauncher(
        kind="slurm", log=str(log_paths(folder, job_id).stdout), since=time.time(), job_id=job_id
    )


def record_detached_run(study: optuna.Study) -> frozenset[str]:
    """In a detached launcher starting (again): store this run's host, pid and launcher id with the
    study, and return the ids its earlier runs had (a requeued SLURM launcher takes their claims back
    at once). Outside a detached launcher: nothing, and no ids."""
    kind = os.environ.get(DETACHED_ENV)
    record = StudyRecord.of(study).detached
    if kind is None or record is None or record.kind != kind:
        return frozenset()
    if kind == "slurm" and record.job_id != os.environ.get("SLURM_JOB_ID"):
        return frozenset()  # a launcher started by hand inside some other job
    if kind == "local" and record.pid != os.getpid():
        return frozenset()
    me = owners.me()
    records.write_detached(
        study,
        dataclasses.replace(
            record,
            host=me.host,
            pid=me.pid,
            started=me.started,
            launcher_ids=(*record.launcher_ids, str(me)),
        ),
    )
    return frozenset(record.launcher_ids)


if __name__ == "__main__":  # a local detached launcher: `python -m sweep.launcher.detach REQUEST_JSON`
    sys.exit(run_command(DetachedLaunch(**json.loads(sys.argv[1])).run, interrupted=""))
