"""The `local` executor: submitit's LocalExecutor, one real subprocess per job, on this machine.

The job id is the pid of submitit's controller process, started in a session of its own: a terminal's
Ctrl-C stops the launcher, not its jobs, and the job (controller, task, the task's children) is one
process group that is stopped as a whole. A trial of several ranks (`tasks_per_node`) is one task per
rank, and the controller (`sweep._compat.local_controller`) ends them all once one fails. Logs and
pickles go to `<run_dir>/submitit/`, the controller's own output to `controller.log` there. Parallel
jobs get the GPUs the fewest live jobs hold (`GpuPool`): submitit's LocalExecutor gives every job the
first `gpus_per_node` devices, so four parallel trials on a four-GPU workstation would all train on
GPU 0. The ids are the launcher's own CUDA_VISIBLE_DEVICES when it has one, else those `nvidia-smi`
lists (the launcher never imports torch).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import submitit

from sweep import procs
from sweep._compat import local_process, own_session
from sweep._compat.local_controller import GRACE_VARIABLE, first_failure
from sweep.errors import SweepError
from sweep.executors.base import (
    Executor,
    Job,
    JobFn,
    Outcome,
    RankEnd,
    job_outcome,
)
from sweep.executors.files import JobFiles, log_paths
from sweep.executors.program import ProgramJob, program_grace, stop_leftovers
from sweep.study.spec import Resources

LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default is 2 minutes; a local job runs until done
# After SIGTERM, how long a local job's processes get to exit before SIGKILL (a trainer exits at once;
# a program's job first gives its program the study's stop_grace_s).
LOCAL_STOP_GRACE_S = 5.0

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

    submitit's local controller inherits the launcher's terminal and has no option to change it; what
    it prints (a KeyboardInterrupt traceback when it is stopped by SIGINT) would land among the
    launcher's lines. The launcher is single-threaded, so nothing else writes while the two
    descriptors point at the file.
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
    """A submitit local job: its controller process, ours (a Popen) or a previous launcher's (a pid),
    and every process of the controller's group (its task, the trainer's loader workers).

    The job is all of them: cancelling stops the group, and a job whose controller is gone (`kill -9`
    of the job id) is done only once nothing of it runs, so that a job started again on its run dir
    never trains beside it.
    """

    def __init__(self, folder: Path, job_id: str, process: subprocess.Popen[bytes] | None = None) -> None:
        self.folder = folder
        self.job_id = job_id
        self._pid = int(job_id)
        self._popen = process
        self._pidfd: int | None = None
        self._ended = False  # the controller is gone and so is the rest of the job

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

    def processes(self) -> list[int]:
        """The job's live processes: its controller, and the processes of its group that run for it."""
        folder = os.fsencode(str(self.folder.absolute()))
        found = [self._pid] if self._alive() else []
        for pid in procs.group_members(self._pid):  # the group outlives its leader; its id is not reused
            if pid != self._pid and (
                procs.environ(pid, "SUBMITIT_LOCAL_JOB_ID") == self.job_id or procs.runs_with_arg(pid, folder)
            ):
                found.append(pid)
        return found

    def done(self) -> bool:
        if self._ended:
            return True
        if self._alive():
            return False
        # The controller is gone. Its task dies with it (job.run_dir_held); stop what is left anyway.
        self._stop()
        self._close_fd()
        self._ended = True
        return True

    def cancel(self) -> None:
        # SIGTERM to every process of the job: the task exits at once (job.run_dir_held), a program's
        # job stops its program first; the controller forwards it and exits once its task has.
        self._stop()
        self._ended = True

    def stop_soon(self) -> None:
        # SIGTERM now; the wait for the processes to go (and SIGKILL after the grace) in a thread, so
        # that a launcher pruning a trial does not sit out its job's exit (a quarter second each, the
        # launcher's every other trial unwatched meanwhile). Not a daemon: a process that stops a job
        # this way still sees it killed before it exits.
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        self._ended = True
        threading.Thread(target=self._stop, name=f"stop job {self.job_id}").start()

    def _stop(self) -> None:
        run_dir = self.folder.parent
        procs.terminate(self.processes, grace_s=LOCAL_STOP_GRACE_S + program_grace(run_dir))
        if self._popen is not None:
            self._popen.poll()  # reap it: a zombie controller would look alive to pidfd waiters
        # A program's own process group outlives a job killed before it could stop the program.
        stop_leftovers(run_dir)

    def outcome(self) -> Outcome:
        pickled = job_outcome(self.folder, self.job_id, self._first_failed_rank())
        if pickled is not None:
            return pickled
        logs = log_paths(self.folder, self.job_id)
        lost = f"job {self.job_id} stopped without a result; see {logs.stderr} and {logs.stdout}"
        # The controller dies of a signal only when someone signals it: its task's crash or out-of-memory
        # kill ends it with a status. Known only to the launcher that started it (its exit status).
        code = self._popen.returncode if self._popen is not None else None
        if code is not None and code < 0:
            return Outcome(
                "lost", f"job {self.job_id} was stopped by {_signal(-code)} from outside; {lost}", killed=True
            )
        return Outcome("lost", lost)

    def _first_failed_rank(self) -> RankEnd | None:
        """The rank of a trial of several that failed first, as the job's controller said it."""
        try:
            said = first_failure(JobFiles(self.folder.parent).controller_log.read_text(), self.job_id)
        except (OSError, UnicodeDecodeError):
            return None
        if said is None:
            return None
        rank, code = said
        if code < 0:
            return RankEnd(rank, f"was killed by {_signal(-code)}", signalled=True)
        # 128 + N: a job's wrapper that exited at signal N (SIGTERM from outside: `job.run_dir_held`)
        by_signal = code > 128 and code - 128 in signal.valid_signals()
        how = f"exited with status {code}" + (f" ({_signal(code - 128)})" if by_signal else "")
        return RankEnd(rank, how, signalled=by_signal)


def _signal(number: int) -> str:
    """A signal's name (SIGKILL), or "signal N"."""
    return signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"


def attach(job_id: str, run_dir: Path) -> LocalJob:
    """The local job `job_id` of `run_dir`, started by any launcher on this host."""
    return LocalJob(JobFiles(run_dir).folder, job_id)


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

    def __init__(self, resources: Resources, *, parallel: int = 1, **settings: Any) -> None:
        super().__init__(resources, parallel=parallel, **settings)
        self.parameters: dict[str, Any] = {
            "timeout_min": resources.timeout_min or LOCAL_TIMEOUT_MIN,
            "gpus_per_node": resources.gpus,  # CUDA_VISIBLE_DEVICES: `visible_gpus`, else the first ones
            # processes of each job, each a rank with torchrun's variables (sweep.executors.ranks)
            "tasks_per_node": resources.tasks_per_node,
        }
        self.gpus = resources.gpus
        self.pool = _gpu_pool(resources.gpus)
        # torch starts one thread per core in every process: N parallel jobs on N cores would each start
        # N threads and spend their time switching. SLURM jobs get the same from SLURM_CPUS_PER_TASK.
        threads = str(job_threads(resources.cpus, parallel))
        self.threads = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}

    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        files = JobFiles(run_dir)
        folder = files.folder
        executor = submitit.LocalExecutor(folder=folder)
        gpus = self.pool.take(self.gpus) if self.pool is not None else []
        executor.update_parameters(**self.parameters, **({"visible_gpus": tuple(gpus)} if gpus else {}))
        folder.mkdir(parents=True, exist_ok=True)
        # once one of the job's tasks (a rank) fails, its controller gives the others this long after
        # SIGTERM (`sweep._compat.local_controller`): a program's job first stops its program
        grace = LOCAL_STOP_GRACE_S + (fn.program.stop_grace_s if isinstance(fn, ProgramJob) else 0.0)
        variables = {**self.threads, GRACE_VARIABLE: str(grace)}
        with _output_to(files.controller_log), _environment(**variables), own_session():
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
        return orphan(run_dir, after=after)


def orphan(run_dir: Path, *, after: str | None = None) -> str | None:
    """The live local job of `run_dir` other than job `after`: one a launcher started and died before
    storing its id. None when there is none."""
    # submitit writes <pid>_submitted.pkl once the controller process runs; its command line names
    # the folder, so a live controller of this run dir is found even under a reused pid.
    files = JobFiles(Path(run_dir).absolute())  # its folder as submitit passes it to the controller
    folder = files.folder
    pids = [job_id for job_id, _ in files.submitted()]
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
