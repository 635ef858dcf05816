"""Executors: where a trial's job runs. One small interface, the backends side by side (submitit's shape).

* `debug`: in the launcher's process, synchronously inside `submit` (for tests and debugging). The job
  has finished when `submit` returns, so a pruner cannot stop a debug job early: the trial is still
  told PRUNED, but all its epochs ran. Its output goes to `<run_dir>/debug.log`.
* `local`: submitit's LocalExecutor, one real subprocess per job; the job id is the pid of submitit's
  controller process. Parallel jobs get the GPUs the fewest live jobs hold (sweep.local_gpus). Logs
  and pickles go to `<run_dir>/submitit/`, the controller's own output to `controller.log` there.
* `slurm`: submitit's SlurmExecutor; [resources] become sbatch options. Timeouts and preemptions
  requeue the job (sweep.job.TrainJob is checkpointable) and the trainer resumes from checkpoint.pt.
* `auto`: slurm when `sbatch` is on PATH, local otherwise.

A job is re-attached after a launcher restart with `Executor.attach(job_id, run_dir)`.
"""

from __future__ import annotations

import abc
import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import submitit
from submitit.core.utils import FailedJobError, JobPaths, pickle_load

from sweep.errors import SweepError
from sweep.job import MAX_REQUEUES
from sweep.local_gpus import GpuPool, job_gpus, machine_gpus
from sweep.slurm import GONE, JobState, SlurmUnavailable, StateCache, job_states, require_slurm, scancel
from sweep.study import Resources

if TYPE_CHECKING:
    from sweep.status import TrialRow

EXECUTORS = ("auto", "slurm", "local", "debug")
SUBMITIT_DIR = "submitit"  # beside the run's files: <run_dir>/submitit/<job id>_0_log.out, ...
DEBUG_LOG = "debug.log"  # a debug job's stdout and stderr
CONTROLLER_LOG = "controller.log"  # in SUBMITIT_DIR: what a local job's submitit controller prints
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default is 2 minutes; a local job runs until done
CANCEL_DEADLINE_S = 30.0  # how long `cancel` waits for a job's processes to be gone

JobFn = Callable[[dict[str, Any], str], Any]


@dataclass(frozen=True)
class Outcome:
    """How a finished job ended: success, error (with the job's traceback), or lost (no result at all:
    killed, out of memory, or an in-process job whose launcher died)."""

    status: Literal["success", "error", "lost"]
    detail: str = ""  # the traceback of an error; what is known of a lost job


class Job(abc.ABC):
    """A submitted job, as the launcher sees it."""

    job_id: str

    @abc.abstractmethod
    def done(self) -> bool:
        """Whether the job has stopped (finished, failed, cancelled or vanished)."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop the job and return once it is gone (or CANCEL_DEADLINE_S has passed)."""

    @abc.abstractmethod
    def outcome(self) -> Outcome:
        """How the job ended; call once `done()` is true."""

    def describe(self) -> str:
        """The job's state in a word or two, for the launcher's lines."""
        return "ended" if self.done() else "running"

    def end_fd(self) -> int | None:
        """A file descriptor that becomes readable when the job ends, for `wait_for_end`; None when the
        job has none (a SLURM job ends on another machine: the launcher polls it)."""
        return None


def wait_for_end(jobs: list[Job], seconds: float) -> None:
    """Sleep `seconds`, or less: until one of `jobs` that has an `end_fd` ends."""
    fds = [fd for fd in (job.end_fd() for job in jobs) if fd is not None]
    if fds:
        select.select(fds, [], [], seconds)
    else:
        time.sleep(seconds)


class Executor(abc.ABC):
    """Submits jobs of one kind and re-attaches to them by id."""

    name: str

    @abc.abstractmethod
    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        """Start `fn(config, str(run_dir))`."""

    @abc.abstractmethod
    def attach(self, job_id: str, run_dir: Path) -> Job:
        """The job `job_id` that ran for `run_dir`, submitted by an earlier launcher."""

    def orphan(self, run_dir: Path, *, after: str | None = None) -> str | None:
        """A live job for `run_dir` submitted after job `after` (or at all, when None): a launcher that
        died between submitting a job and storing its id leaves one. None when there is none."""
        return None


def make_executor(name: str, resources: Resources) -> Executor:
    """The executor called `name` (auto | slurm | local | debug), requesting `resources` per job."""
    if name == "auto":
        name = "slurm" if shutil.which("sbatch") else "local"
    if name == "debug":
        return DebugExecutor()
    if name == "local":
        return LocalExecutor(resources)
    if name == "slurm":
        return SlurmExecutor(resources)
    raise SweepError(f"unknown executor '{name}'; choose one of {', '.join(EXECUTORS)}")


# -- debug: in process ------------------------------------------------------------------------------------


class DebugJob(Job):
    def __init__(self, job_id: str, outcome: Outcome) -> None:
        self.job_id = job_id
        self._outcome = outcome

    def done(self) -> bool:
        return True

    def cancel(self) -> None:
        pass  # it finished inside submit

    def outcome(self) -> Outcome:
        return self._outcome


class DebugExecutor(Executor):
    name = "debug"

    def __init__(self) -> None:
        self._count = 0

    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        self._count += 1
        job_id = f"debug-{os.getpid()}-{self._count}"
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / DEBUG_LOG).open("a") as log, contextlib.redirect_stdout(log):
            try:
                fn(config, str(run_dir))
                outcome = Outcome("success")
            except Exception:  # the job's failure is the trial's, not the launcher's
                outcome = Outcome("error", traceback.format_exc())
        return DebugJob(job_id, outcome)

    def attach(self, job_id: str, run_dir: Path) -> Job:
        # An in-process job died with the launcher that ran it.
        return DebugJob(job_id, Outcome("lost", f"in-process job {job_id} ended with its launcher"))


# -- submitit jobs: results are pickles in the submitit folder --------------------------------------------


def _pickled_outcome(folder: Path, job_id: str) -> Outcome | None:
    """The outcome submitit pickled for task 0 of `job_id`, None when it left none."""
    path = JobPaths(folder, job_id, task_id=0).result_pickle
    if not path.exists():
        return None
    status, value = pickle_load(path)
    return Outcome("success") if status == "success" else Outcome("error", str(value))


def _lost(folder: Path, job_id: str) -> Outcome:
    logs = JobPaths(folder, job_id, task_id=0)
    return Outcome("lost", f"job {job_id} stopped without a result; see {logs.stderr} and {logs.stdout}")


# -- local: submitit's LocalExecutor ----------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) submitit controller process."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and b"submitit" in cmdline  # a reused pid is not our job
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _controls(pid: int, folder: Path) -> bool:
    """Whether `pid` is a live submitit controller of the jobs in `folder`."""
    if not _pid_alive(pid):
        return False
    try:
        return os.fsencode(str(folder)) in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


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


def wait_gone(alive: Callable[[], bool], deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not alive():
            return True
        time.sleep(0.05)
    return not alive()


class LocalJob(Job):
    """A submitit local job: its controller process, ours (a Popen) or a previous launcher's (a pid)."""

    def __init__(self, folder: Path, job_id: str, process: subprocess.Popen[bytes] | None = None) -> None:
        self.folder = folder
        self.job_id = job_id
        self._pid = int(job_id)
        self._process = process
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
        if self._process is not None:
            return self._process.poll() is None
        return _pid_alive(self._pid)

    def done(self) -> bool:
        if self._alive():
            return False
        self._close_fd()
        return True

    def cancel(self) -> None:
        # SIGINT makes the controller kill its task (SIGINT, then SIGKILL a second later) and exit.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if not self._alive():
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, sig)
            if wait_gone(self._alive, CANCEL_DEADLINE_S / 3):
                return

    def outcome(self) -> Outcome:
        return _pickled_outcome(self.folder, self.job_id) or _lost(self.folder, self.job_id)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, resources: Resources) -> None:
        self.parameters: dict[str, Any] = {
            "timeout_min": resources.timeout_min or LOCAL_TIMEOUT_MIN,
            "gpus_per_node": resources.gpus,  # CUDA_VISIBLE_DEVICES: `visible_gpus`, else the first ones
        }
        self.gpus = resources.gpus
        self.pool = _gpu_pool(resources.gpus)

    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        folder = run_dir / SUBMITIT_DIR
        executor = submitit.LocalExecutor(folder=folder)
        gpus = self.pool.take(self.gpus) if self.pool is not None else []
        executor.update_parameters(**self.parameters, **({"visible_gpus": tuple(gpus)} if gpus else {}))
        folder.mkdir(parents=True, exist_ok=True)
        with _output_to(folder / CONTROLLER_LOG):
            submitted = executor.submit(fn, config, str(run_dir))
        job = LocalJob(folder, submitted.job_id, submitted._process)  # type: ignore[attr-defined]
        if self.pool is not None:
            self.pool.hold(job.job_id, gpus, lambda: not job.done())
        return job

    def attach(self, job_id: str, run_dir: Path) -> Job:
        job = LocalJob(run_dir / SUBMITIT_DIR, job_id)
        if self.pool is not None and not job.done():  # a restarted launcher's new jobs avoid its GPUs
            self.pool.hold(job_id, job_gpus(int(job_id)), lambda: not job.done())
        return job

    def orphan(self, run_dir: Path, *, after: str | None = None) -> str | None:
        # submitit writes <pid>_submitted.pkl once the controller process runs; its command line names
        # the folder, so a live controller of this run dir is found even under a reused pid.
        folder = (run_dir / SUBMITIT_DIR).absolute()  # as submitit passes it to the controller
        submitted = sorted(folder.glob("*_submitted.pkl"), key=lambda path: path.stat().st_mtime)
        pids = [path.name.split("_")[0] for path in submitted]
        live = [pid for pid in pids if pid.isdigit() and pid != str(after) and _controls(int(pid), folder)]
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


def with_local_states(rows: list[TrialRow]) -> list[TrialRow]:
    """`sweep status` rows, the RUNNING local trials' with whether their job's process still runs.

    A local job runs on its launcher's host; started on another host it is shown as such, unchecked.
    """
    here = socket.gethostname()
    states: dict[int, str] = {}
    for row in rows:
        if row.state != "RUNNING" or row.executor != "local" or not row.job_id or not row.run_dir:
            continue
        host = (row.launcher or "").rpartition(":")[0]
        if host and host != here:
            states[row.number] = f"local on {host}"
            continue
        folder = (Path(row.run_dir) / SUBMITIT_DIR).absolute()
        if not (row.job_id.isdigit() and _controls(int(row.job_id), folder)):
            states[row.number] = "local: ended; `sweep launch` resumes it"
            continue
        gpus = job_gpus(int(row.job_id))
        states[row.number] = "local: running" + (f" on GPU {','.join(map(str, gpus))}" if gpus else "")
    return [replace(row, job_state=states[row.number]) if row.number in states else row for row in rows]


# -- slurm: submitit's SlurmExecutor ----------------------------------------------------------------------


def slurm_parameters(resources: Resources) -> dict[str, Any]:
    """[resources] as submitit SlurmExecutor parameters (gpus -> gpus_per_node, mem_gb -> mem, ...).

    Extras from [resources.slurm] that submitit has no parameter for go to `additional_parameters`,
    which submitit writes as `#SBATCH --name=value` lines.
    """
    params: dict[str, Any] = {"nodes": 1, "ntasks_per_node": 1, "cpus_per_task": resources.cpus}
    if resources.gpus:
        params["gpus_per_node"] = resources.gpus
    if resources.mem_gb is not None:
        params["mem"] = f"{round(resources.mem_gb * 1024)}MB"
    if resources.timeout_min is not None:
        params["time"] = resources.timeout_min  # minutes
    if resources.partition is not None:
        params["partition"] = resources.partition
    known = submitit.SlurmExecutor._valid_parameters()
    extras = {key: value for key, value in resources.slurm.items() if key not in known}
    params.update({key: value for key, value in resources.slurm.items() if key in known})
    if extras:
        params["additional_parameters"] = extras
    return params


class SlurmJob(Job):
    """A SLURM job, submitted by this launcher or re-attached by id; its state comes from squeue/sacct
    (sweep.slurm), shared with the other jobs of the executor in one cached query."""

    def __init__(self, job_id: str, folder: Path, states: StateCache) -> None:
        self.job_id = job_id
        self.folder = folder
        self._states = states

    def state(self, *, fresh: bool = False) -> JobState | None:
        """What SLURM says of the job now; None when squeue/sacct do not answer."""
        try:
            return self._states.get(self.job_id, fresh=fresh)
        except SlurmUnavailable:
            return None

    def describe(self) -> str:
        state = self.state()
        if state is None:
            return "slurm does not answer"
        return f"slurm {state.state}" + ("" if state.live else ", ended")

    def done(self) -> bool:
        if JobPaths(self.folder, self.job_id, task_id=0).result_pickle.exists():
            return True
        state = self.state()
        return state is not None and not state.live  # pending, running, requeued: not done

    def cancel(self) -> None:
        scancel([self.job_id])
        wait_gone(lambda: (self.state(fresh=True) or _UNKNOWN).live, CANCEL_DEADLINE_S)

    def outcome(self) -> Outcome:
        self._states.forget(self.job_id)
        pickled = _pickled_outcome(self.folder, self.job_id)
        if pickled is not None:
            return pickled
        state = self.state()
        known = state is not None and state.state != GONE
        said = f"ended {state.state}" if known and state is not None else "is unknown to squeue and sacct"
        logs = JobPaths(self.folder, self.job_id, task_id=0)
        return Outcome("lost", f"SLURM job {self.job_id} {said} without a result; see {logs.stderr}")


_UNKNOWN = JobState("", "UNKNOWN", "none")


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, resources: Resources) -> None:
        require_slurm()  # before the launcher touches the study: one clear line, exit 2
        self.parameters = slurm_parameters(resources)
        self.states = StateCache()

    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        # submitit's own requeue bound (timeouts only, default 3) is raised to ours, which counts all requeues
        executor = submitit.SlurmExecutor(folder=run_dir / SUBMITIT_DIR, max_num_timeout=MAX_REQUEUES)
        executor.update_parameters(job_name=f"sweep-{run_dir.parent.name}-{run_dir.name}", **self.parameters)
        try:
            job = executor.submit(fn, config, str(run_dir))
        except FailedJobError as err:  # sbatch refused: bad partition, more GPUs than a node has, ...
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else "no message"
            raise SweepError(f"sbatch refused the job for {run_dir}: {reason}") from None
        return SlurmJob(job.job_id, Path(job.paths.folder), self.states)

    def attach(self, job_id: str, run_dir: Path) -> Job:
        return SlurmJob(job_id, run_dir / SUBMITIT_DIR, self.states)

    def orphan(self, run_dir: Path, *, after: str | None = None) -> str | None:
        # submitit names each submission's script <job id>_submission.sh as soon as sbatch has answered
        ids = [path.name.split("_")[0] for path in (run_dir / SUBMITIT_DIR).glob("*_submission.sh")]
        last = int(after) if after is not None and str(after).isdigit() else -1
        newer = sorted((i for i in ids if i.isdigit() and int(i) > last), key=int)
        if not newer:
            return None
        try:
            states = job_states(newer)
        except SlurmUnavailable:
            return None
        live = [job_id for job_id in newer if states[job_id].live]
        return live[-1] if live else None
