"""What every executor is: a `Job` the launcher polls, cancels and asks how it ended, and an `Executor`
that submits jobs and re-attaches to them by id (submitit's shape).

The backends sit beside this module (`debug`, `local`, `slurm`); `sweep.executors` holds the registry.
A job's files go to `<run_dir>/submitit/` for the submitit-based backends, whose result pickles are
read here.
"""

from __future__ import annotations

import abc
import re
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from submitit.core.utils import JobPaths, pickle_load

from sweep.errors import Printer, print_line
from sweep.executors.files import log_paths
from sweep.study.spec import Waits

if TYPE_CHECKING:
    from sweep.study.spec import Resources

CANCEL_DEADLINE_S = 30.0  # how long `cancel` waits for a job's processes to be gone

JobFn = Callable[[dict[str, Any], str], Any]


@dataclass(frozen=True)
class Outcome:
    """How a finished job ended: success, error (with the job's traceback), or lost (no result at all:
    killed, out of memory, or an in-process job whose launcher died)."""

    status: Literal["success", "error", "lost"]
    detail: str = ""  # the traceback of an error; what is known of a lost job
    # A lost job stopped by a signal from outside it (someone's `kill` of its id), not by a failure of
    # its own: a resubmission need not count against the trial. False where it is not known.
    killed: bool = False
    # A lost job that never ran the trial because the scheduler did not answer it (a SLURM job's srun
    # during a controller restart): started again, uncounted, like a killed one.
    outage: bool = False


class Job(abc.ABC):
    """A submitted job, as the launcher sees it."""

    job_id: str

    @abc.abstractmethod
    def done(self) -> bool:
        """Whether the job has stopped (finished, failed, cancelled or vanished)."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop the job and return once it is gone (or CANCEL_DEADLINE_S has passed)."""

    def stop_soon(self) -> None:
        """Stop the job without waiting for it to be gone (a pruned trial's: the launcher goes on at
        once); by default the same as `cancel`."""
        self.cancel()

    @abc.abstractmethod
    def outcome(self) -> Outcome:
        """How the job ended; call once `done()` is true."""

    def waiting(self) -> str | None:
        """Why the job waits in a queue, not started yet (SLURM's reason: Resources, Priority, ...);
        None when it does not wait (or the executor has no queue)."""
        return None

    def restarts(self) -> int | None:
        """How often the scheduler put the job back in its queue (SLURM's restart count, as last asked);
        None when not known (or the executor never requeues)."""
        return None

    def describe(self) -> str:
        """The job's state in a word or two, for the launcher's lines."""
        return "ended" if self.done() else "running"

    def end_fd(self) -> int | None:
        """A file descriptor that becomes readable when the job ends, for `wait_for_end`; None when the
        job has none (a SLURM job ends on another machine: the launcher polls it)."""
        return None


class SubmitHeld(Exception):  # noqa: N818 (a hold, not an error: the launcher waits and tries again)
    """The scheduler refused a job for a submission limit (its name is the message): submit it again
    once one of the study's jobs has ended. With `retry_s`: the scheduler did not answer (an outage):
    submit it again in `retry_s` seconds; the launcher goes on watching its other trials meanwhile."""

    def __init__(self, reason: str, *, retry_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_s = retry_s


class Executor(abc.ABC):
    """Submits jobs of one kind and re-attaches to them by id; built from a study's [resources] and how
    many of its jobs run at once."""

    name: str

    def __init__(
        self,
        resources: Resources | None = None,
        *,
        parallel: int = 1,
        waits: Waits | None = None,
        out: Printer | None = None,
    ) -> None:
        """`waits`: how often it asks the scheduler, how long it waits out an outage ([waits]); `out`:
        where it says an outage."""
        self.resources = resources
        self.parallel = parallel
        self.waits = waits or Waits()
        self.out: Printer = out or print_line

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

    def finish(self) -> None:
        """Wait for what this executor still does after the launch's last trial ended, saying what."""
        return None  # the local and debug executors leave nothing behind


def wait_for_end(jobs: list[Job], seconds: float) -> None:
    """Sleep `seconds`, or less: until one of `jobs` that has an `end_fd` ends."""
    fds = [fd for fd in (job.end_fd() for job in jobs) if fd is not None]
    if fds:
        select.select(fds, [], [], seconds)
    else:
        time.sleep(seconds)


def pickled_outcome(folder: Path, job_id: str) -> Outcome | None:
    """The outcome submitit pickled for task 0 of `job_id`, None when it left none.

    A pickle that cannot be read (truncated by a full disk or a killed copy, corrupt) is a lost job,
    with the file named: the launcher resumes the trial or fails it with that reason, and goes on.
    """
    path = log_paths(folder, job_id).result_pickle
    if not path.exists():
        return None
    try:
        status, value = pickle_load(path)
    except Exception as err:  # damaged bytes raise almost anything: EOFError, UnpicklingError, IndexError
        return Outcome("lost", f"job {job_id}'s result file {path} is unreadable ({_brief(err)})")
    return Outcome("success") if status == "success" else Outcome("error", str(value))


@dataclass(frozen=True)
class RankEnd:
    """How the first rank of a job of several to fail ended, as what ran the ranks said it (the local
    controller's line, srun's): rank, "exited with status 3" or "was killed by SIGKILL", and whether a
    signal ended it (a rank the out-of-memory killer took leaves no result, as a job of one task)."""

    rank: int
    said: str
    signalled: bool


def job_outcome(folder: Path, job_id: str, first: RankEnd | None = None) -> Outcome | None:
    """The outcome submitit pickled for `job_id`: task 0's, unless another task (a rank of a trial of
    several) failed first; None when no task left one.

    A trial's ranks share one fate: one that fails ends the job (srun's `--kill-on-bad-exit`, the local
    controller), and the others, stopped, leave no result or their own error after it (a collective's
    "connection closed by peer"). The job's error is that of the rank that failed `first` (what ran the
    ranks said which; else the oldest error pickle), its last line led by "rank K: "; a rank that left
    no error of its own is named with how it ended: a lost job when a signal killed it. A success of
    task 0 is the job's success.
    """
    zero = pickled_outcome(folder, job_id)
    if zero is not None and zero.status == "success":
        return zero
    errors = _task_errors(folder, job_id)
    if first is not None and first.rank > 0 and first.rank not in errors:
        stderr = JobPaths(folder, job_id, task_id=first.rank).stderr
        said = f"rank {first.rank} {first.said} (job {job_id}); see {stderr}"
        return Outcome("lost", f"{said} without a result") if first.signalled else Outcome("error", said)
    rank = (
        first.rank if first is not None else min(errors, default=0, key=lambda task: (errors[task][0], task))
    )
    if rank == 0 or rank not in errors:
        return zero
    lines = errors[rank][1].rstrip().splitlines() or ["no message"]
    return Outcome("error", "\n".join([*lines[:-1], f"rank {rank}: {lines[-1].strip()}"]))


def _task_errors(folder: Path, job_id: str) -> dict[int, tuple[int, str]]:
    """The tasks of `job_id` whose error submitit pickled: task -> (when, the error)."""
    named = re.compile(rf"{re.escape(job_id)}_(\d+)_result\.pkl")
    errors = {}
    for path in folder.glob(f"{job_id}_*_result.pkl"):
        task = named.fullmatch(path.name)
        if task is None:
            continue
        try:
            stamp = path.stat().st_mtime_ns
            status, value = pickle_load(path)
        except Exception:  # gone, or damaged: see pickled_outcome
            continue
        if status != "success":
            errors[int(task[1])] = (stamp, str(value))
    return errors


def _brief(err: BaseException) -> str:
    """An exception as `Type: message`, or its type alone when it has no message."""
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
