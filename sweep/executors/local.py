"""The `local` executor: submitit's LocalExecutor, one real subprocess per job, on this machine.

The job id is the pid of submitit's controller process. Logs and pickles go to `<run_dir>/submitit/`,
the controller's own output to `controller.log` there. Parallel jobs get the GPUs the fewest live
jobs hold (`GpuPool`): submitit's LocalExecutor gives every job the first `gpus_per_node` devices, so
four parallel trials on a four-GPU workstation would all train on GPU 0. The ids are the launcher's
own CUDA_VISIBLE_DEVICES when it has one, else those `nvidia-smi` lists (the launcher never imports
torch).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import submitit

from sweep import procs
from sweep._compat import local_process
from sweep.errors import SweepError
from sweep.executors.base import (
    CANCEL_DEADLINE_S,
    SUBMITIT_DIR,
    Executor,
    Job,
    JobFn,
    Outcome,
    log_paths,
    pickled_outcome,
    wait_gone,
)
from sweep.executors.program import stop_leftovers
from sweep.study.spec import Resources

CONTROLLER_LOG = "controller.log"  # in SUBMITIT_DIR: what a local job's submitit controller prints
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default is 2 minutes; a local job runs until done

# -- GPUs -------------------------------------------------------------------------------------------------

NVIDIA_SMI_TIMEOUT_S = 20.0


def machine_gpus() -> list[int]:
    """The GPU ids a job of this launcher may use: CUDA_VISIBLE_DEVICES when set, else nvidia-smi's.

    Empty when neither says (no GPU, no driver), or when CUDA_VISIBLE_DEVICES names GPUs by UUID,
    which submitit cannot pass on.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [part.strip() for part in visible.split(",") if part.strip()]
        return [int(i) for i in ids] if all(i.isdigit() for i in ids) else []
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line) for line in (line.strip() for line in listed.splitlines()) if line.isdigit()]


def job_gpus(pid: int) -> list[int]:
    """The GPUs a running local job was given: CUDA_VISIBLE_DEVICES in its process's environment."""
    value = procs.environ(pid, "CUDA_VISIBLE_DEVICES") or ""
    return [int(i) for i in value.split(",") if i.strip().isdigit()]


class GpuPool:
    """The machine's GPUs and the jobs holding them; `take` picks for a new job."""

    def __init__(self, gpus: list[int]) -> None:
        self.gpus = gpus
        self.held: dict[str, tuple[list[int], Callable[[], bool]]] = {}  # job id -> (gpus, is it live)

    def hold(self, job_id: str, gpus: list[int], alive: Callable[[], bool]) -> None:
        """Record that job `job_id` holds `gpus` while `alive()` says it runs."""
        self.held[job_id] = (gpus, alive)

    def take(self, count: int) -> list[int]:
        """The `count` GPUs held by the fewest live jobs (in the machine's order among equals)."""
        self.held = {job: entry for job, entry in self.held.items() if entry[1]()}
        load = Counter(gpu for gpus, _ in self.held.values() for gpu in gpus)
        return sorted(self.gpus, key=lambda gpu: (load[gpu], self.gpus.index(gpu)))[:count]


# -- the jobs ---------------------------------------------------------------------------------------------


def controls(pid: int, folder: Path) -> bool:
    """Whether `pid` is a live submitit controller of the jobs in `folder` (a reused pid is not)."""
    return procs.runs(pid, b"submitit") and procs.runs_with_arg(pid, os.fsencode(str(folder)))


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Point this process's stdout and stderr (fds 1 and 2) at `path` while a child process is started.

    submitit's local controller inherits the launcher's terminal and has no option to change it; it
    stops on SIGINT (how a job is cancelled, and what Ctrl-C sends) with a KeyboardInterrupt traceback,
    which would land among the launcher's lines. The launcher is single-threaded, so nothing else
    writes while the two descriptors point at the file.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with path.open("ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


class LocalJob(Job):
    """A submitit local job: its controller process, ours (a Popen) or a previous launcher's (a pid)."""

    def __init__(self, folder: Path, job_id: str, process: subprocess.Popen[bytes] | None = None) -> None:
        self.folder = folder
        self.job_id = job_id
        self._pid = int(job_id)
        self._popen = process
        self._pidfd: int | None = None

    def end_fd(self) -> int | None:
        # A pidfd turns readable when the process exits: the launcher sees a short job end at once
        # instead of at its next poll (Linux 5.3 and later; elsewhere the launcher polls).
        if self._pidfd is None and hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):  # gone already, or a kernel without pidfd
                self._pidfd = os.pidfd_open(self._pid)
        return self._pidfd

    def _close_fd(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __del__(self) -> None:
        self._close_fd()

    def _alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return procs.runs(self._pid, b"submitit")  # a reused pid is not our job

    def done(self) -> bool:
        if self._alive():
            return False
        self._close_fd()
        return True

    def cancel(self) -> None:
        # SIGINT makes the controller kill its task (SIGINT, then SIGKILL a second later) and exit.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if not self._alive():
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, sig)
            if wait_gone(self._alive, CANCEL_DEADLINE_S / 3):
                break
        # A program's own process group outlives a task killed before it could stop the program.
        stop_leftovers(self.folder.parent)

    def outcome(self) -> Outcome:
        pickled = pickled_outcome(self.folder, self.job_id)
        if pickled is not None:
            return pickled
        logs = log_paths(self.folder, self.job_id)
        return Outcome(
            "lost", f"job {self.job_id} stopped without a result; see {logs.stderr} and {logs.stdout}"
        )


def attach(job_id: str, run_dir: Path) -> LocalJob:
    """The local job `job_id` of `run_dir`, started by any launcher on this host."""
    return LocalJob(run_dir / SUBMITIT_DIR, job_id)


def job_threads(cpus: int, parallel: int) -> int:
    """Threads a local job may use: its [resources] cpus, at most its share of this machine's cores."""
    return max(1, min(cpus, (os.cpu_count() or 1) // max(1, parallel)))


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables while a job is started (its controller copies the environment)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, resources: Resources, *, parallel: int = 1) -> None:
        super().__init__(resources, parallel=parallel)
        self.parameters: dict[str, Any] = {
            "timeout_min": resources.timeout_min or LOCAL_TIMEOUT_MIN,
            "gpus_per_node": resources.gpus,  # CUDA_VISIBLE_DEVICES: `visible_gpus`, else the first ones
        }
        self.gpus = resources.gpus
        self.pool = _gpu_pool(resources.gpus)
        # torch starts one thread per core in every process: N parallel jobs on N cores would each start
        # N threads and spend their time switching. SLURM jobs get the same from SLURM_CPUS_PER_TASK.
        threads = str(job_threads(resources.cpus, parallel))
        self.threads = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}

    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        folder = run_dir / SUBMITIT_DIR
        executor = submitit.LocalExecutor(folder=folder)
        gpus = self.pool.take(self.gpus) if self.pool is not None else []
        executor.update_parameters(**self.parameters, **({"visible_gpus": tuple(gpus)} if gpus else {}))
        folder.mkdir(parents=True, exist_ok=True)
        with _output_to(folder / CONTROLLER_LOG), _environment(**self.threads):
            submitted = executor.submit(fn, config, str(run_dir))
        job = LocalJob(folder, submitted.job_id, local_process(submitted))
        if self.pool is not None:
            self.pool.hold(job.job_id, gpus, lambda: not job.done())
        return job

    def attach(self, job_id: str, run_dir: Path) -> Job:
        job = attach(job_id, run_dir)
        if self.pool is not None and not job.done():  # a restarted launcher's new jobs avoid its GPUs
            self.pool.hold(job_id, job_gpus(int(job_id)), lambda: not job.done())
        return job

    def orphan(self, run_dir: Path, *, after: str | None = None) -> str | None:
        # submitit writes <pid>_submitted.pkl once the controller process runs; its command line names
        # the folder, so a live controller of this run dir is found even under a reused pid.
        folder = (run_dir / SUBMITIT_DIR).absolute()  # as submitit passes it to the controller
        submitted = sorted(folder.glob("*_submitted.pkl"), key=lambda path: path.stat().st_mtime)
        pids = [path.name.split("_")[0] for path in submitted]
        live = [pid for pid in pids if pid.isdigit() and pid != str(after) and controls(int(pid), folder)]
        return live[-1] if live else None


def _gpu_pool(gpus: int) -> GpuPool | None:
    """The pool local jobs of `gpus` GPUs each take theirs from; None without GPUs to spread over."""
    if gpus == 0:
        return None
    machine = machine_gpus()
    if not machine:  # no nvidia-smi (a CPU machine): submitit's default, the first `gpus` ids
        return None
    if gpus > len(machine):
        raise SweepError(
            f"[resources] gpus = {gpus}, but this machine has {len(machine)} GPU(s) for local jobs "
            f"({', '.join(map(str, machine))}); lower gpus or run on SLURM"
        )
    return GpuPool(machine)


EXECUTOR = LocalExecutor
