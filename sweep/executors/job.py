"""What one trial's job runs, on a compute node or in a local process: `trainer.run` on its run dir.

The job gets plain data (a TrainConfig dict and a path), so the pickle submitit ships holds nothing
but this module's class; torch is imported inside the job, never by the launcher.

Every job (this one and a program's) runs inside `run_dir_held`: it exits at SIGTERM,
a local job dies with its submitit controller, and it holds the run dir's lock for its whole life, so
that two jobs never write one run dir at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import submitit.helpers
from submitit.helpers import DelayedSubmission

from sweep.errors import SweepError, run_command
from sweep.executors import requeues
from sweep.executors.files import JobFiles
from sweep.executors.ranks import export_torch_variables
from sweep.polling import wait_until
from trainer.errors import UserError
from trainer.paths import RunPaths
from trainer.ranks import is_other_rank
from trainer.rung_word import RUNG_EPOCHS, RungEpochs
from trainer.stop import STOP_AFTER_EPOCH, stop_after_epoch

# Requeues one SLURM job may go through (time limits, preemptions, `scontrol requeue`), each resuming
# from checkpoint.pt: a trial whose epochs outlast its time limit this often is failed, not requeued forever.
MAX_REQUEUES = 20
# A job started while the run dir's previous job is still ending (a requeue, a resubmission after a
# killed job) waits this long for its lock before it gives up.
LOCK_WAIT_S = 15.0
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): a signal for this process when its parent dies
# What flock answers on a file system without locks (some NFS and Lustre mounts): run unlocked there.
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def train(config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Train `config` in `run_dir` (resuming from its checkpoint.pt) and return the TrainResult as a dict.

    Raises:
        SweepError: A bad config, missing data, or a run dir holding another config's checkpoint.
    """
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus:  # torch would start one thread per core of the node, not of the job's allocation
        os.environ.setdefault("OMP_NUM_THREADS", cpus)
    import trainer  # trainer.run imports torch on first use: only here, in the job

    result = trainer.run(trainer.TrainConfig.from_dict(config), Path(run_dir), progress=True)
    return dataclasses.asdict(result)


def _exit_at_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (scancel, scontrol requeue, preemption, a local job cancelled, pruned or left by its
    controller): exit now, with no result pickle, so that a requeued or resubmitted run starts afresh
    from checkpoint.pt. submitit ignores SIGTERM, which would keep a pruned or requeued SLURM job
    training for KillWait seconds (30 by default) until its SIGKILL, and a local one for ever."""
    print("sweep: SIGTERM; stopping (a job started again on this run dir resumes from it)", flush=True)
    os._exit(128 + signal.SIGTERM)  # files are written atomically: nothing is left half-written


def _die_with_controller() -> None:
    """In a local job: SIGTERM this process when its submitit controller dies (`kill -9` of the job id
    `sweep status` shows), instead of training on unwatched beside the job started again (Linux)."""
    controller = os.environ.get("SUBMITIT_LOCAL_JOB_ID", "")
    if os.environ.get("SUBMITIT_EXECUTOR") != "local" or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # no libc to load: the launcher stops us instead
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if controller.isdigit() and os.getppid() != int(controller):  # it died before the prctl
        _exit_at_sigterm(signal.SIGTERM, None)


def hold_run_dir(run_dir: Path, *, wait_s: float = LOCK_WAIT_S) -> int | None:
    """Lock `run_dir` for this process's life: an exclusive flock on its LOCK_FILE; the descriptor
    (None where the file system has no locks).

    Raises:
        SweepError: Another job still holds the run dir after `wait_s`.
    """
    path = JobFiles(run_dir).lock
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def locked() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        held = wait_until(locked, wait_s, every_s=0.2)
    except OSError as err:
        if err.errno not in NO_LOCKS:
            raise
        print(f"sweep: {path}: no file locks here ({err.strerror}); running unlocked", flush=True)
        os.close(fd)
        return None
    if not held:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SweepError(
            f"run dir {run_dir} is in use by another job ({path.name} is held by {holder}) after "
            f"waiting {wait_s:.0f} s; two jobs would write its files at once. Stop the other "
            "job (`sweep cancel`) or let it end, then `sweep launch` again"
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def run_dir_held(run_dir: Path, *, lock_wait_s: float = LOCK_WAIT_S) -> Iterator[int | None]:
    """What every job runs inside: it exits at SIGTERM, dies with its local controller, gets torchrun's
    variables when it is one task of several, and (its rank 0) holds the run dir's lock (the descriptor:
    a program started meanwhile may inherit it).

    Restores the SIGTERM handler and releases the lock at the end: a debug job runs in the launcher.
    """
    main = threading.current_thread() is threading.main_thread()  # only it may set signal handlers
    previous = signal.signal(signal.SIGTERM, _exit_at_sigterm) if main else None
    try:
        _die_with_controller()
        export_torch_variables()  # a task of several: torchrun's variables (sweep.executors.ranks)
        # the job's rank 0 holds the lock for all its tasks, which write the run dir through it alone
        fd = None if is_other_rank() else hold_run_dir(run_dir, wait_s=lock_wait_s)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def checked_stop(epoch: int | None) -> int | None:
    """`epoch` as a job's stop_after_epoch: None or an integer >= 1."""
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1):
        raise ValueError(f"stop_after_epoch must be None or an integer >= 1, got {epoch!r}")
    return epoch


def checked_rungs(rung_epochs: str | None) -> str | None:
    """`rung_epochs` as a job's: None, or $SWEEP_RUNG_EPOCHS's text (`trainer.rung_word`)."""
    if rung_epochs is not None:
        try:
            RungEpochs.parse(rung_epochs)
        except UserError as err:
            raise ValueError(f"rung_epochs: {err}") from None
    return rung_epochs


def told(stop_after_epoch: int | None, rung_epochs: str | None = None) -> dict[str, str | None]:
    """The variables of the launcher's word to a job: $SWEEP_STOP_AFTER_EPOCH, $SWEEP_RUNG_EPOCHS; None
    for one it does not set."""
    return {
        STOP_AFTER_EPOCH: None if stop_after_epoch is None else str(stop_after_epoch),
        RUNG_EPOCHS: rung_epochs,
    }


def stop_environment(
    env: dict[str, str], stop_after_epoch: int | None, rung_epochs: str | None = None
) -> dict[str, str]:
    """`env` with $SWEEP_STOP_AFTER_EPOCH set to `stop_after_epoch` and $SWEEP_RUNG_EPOCHS to
    `rung_epochs`, or without them when None (a variable the job inherited never pauses a run, or makes
    it wait for a word, that the launcher did not ask for)."""
    variables = told(stop_after_epoch, rung_epochs)
    env = {key: value for key, value in env.items() if key not in variables}
    env.update({key: value for key, value in variables.items() if value is not None})
    return env


@contextlib.contextmanager
def stop_variable(stop_after_epoch: int | None, rung_epochs: str | None = None) -> Iterator[None]:
    """$SWEEP_STOP_AFTER_EPOCH and $SWEEP_RUNG_EPOCHS in this process's environment as `stop_environment`
    says for the block; restored after it, since a debug job runs in the launcher."""
    variables = told(stop_after_epoch, rung_epochs)
    previous = {key: os.environ.get(key) for key in variables}
    _set_environment(variables)
    try:
        yield
    finally:
        _set_environment(previous)


def _set_environment(variables: dict[str, str | None]) -> None:
    """Set each variable in this process's environment; remove those whose value is None."""
    for key, value in variables.items():
        os.environ.pop(key, None)
        if value is not None:
            os.environ[key] = value


def quiet_sigcont() -> None:
    """Take SIGCONT back from submitit's handler, which only logs it (its default action, to continue a
    stopped process, stays). SLURM sends SIGCONT with the time-limit signal: submitit's time-limit
    handler could then run inside that logging call, and the logging module swallowed the error with
    which it ends a trial (a time limit reached twice without progress; seen in a test run)."""
    signal.signal(signal.SIGCONT, signal.SIG_DFL)


def restarts() -> int:
    """How often SLURM has started this job again (0 on its first run, and outside SLURM)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


class TrainJob(submitit.helpers.Checkpointable):
    """The submitted callable. On a SLURM timeout or preemption submitit calls `checkpoint`, which
    requeues the same call (same job id); the trainer then resumes from the run dir's checkpoint.pt.
    A requeue that did not go through `checkpoint` (`scontrol requeue`, a node failure) runs the
    same call again and resumes the same way. At most MAX_REQUEUES requeues per job."""

    def __init__(
        self,
        *,
        lock_wait_s: float = LOCK_WAIT_S,
        stop_after_epoch: int | None = None,
        rung_epochs: str | None = None,
    ) -> None:
        """`stop_after_epoch`: pause the run after that epoch (its checkpoint written, no result.json;
        the job succeeds, returning the epochs done so far) by setting $SWEEP_STOP_AFTER_EPOCH for the
        trainer; None trains to the config's last epoch, whatever the job's environment says.
        `rung_epochs`: $SWEEP_RUNG_EPOCHS for the trainer (`trainer.rung_word`: it waits at those epochs
        for the launcher's word); None: it waits nowhere, whatever the job's environment says."""
        self.lock_wait_s = lock_wait_s
        self.stop_after_epoch = checked_stop(stop_after_epoch)
        self.rung_epochs = checked_rungs(rung_epochs)

    def __call__(self, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
        quiet_sigcont()
        count = restarts()
        if count > MAX_REQUEUES:
            raise RuntimeError(f"job requeued {count} times (MAX_REQUEUES={MAX_REQUEUES}); giving up")
        if count:
            print(f"sweep: restart {count} of this job; resuming from {run_dir}/checkpoint.pt", flush=True)
        # a job pickled before lock_wait_s (or rung_epochs) existed (a SLURM requeue across an upgrade)
        # waits the default (and waits at no rung)
        with (
            run_dir_held(Path(run_dir), lock_wait_s=getattr(self, "lock_wait_s", LOCK_WAIT_S)),
            stop_variable(getattr(self, "stop_after_epoch", None), getattr(self, "rung_epochs", None)),
        ):
            return train(config, run_dir)

    # submitit's own code accepts None here (no requeue); its annotation does not say so
    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission | None:  # type: ignore[override]
        """Requeue the same call, unless this job has been requeued MAX_REQUEUES times already."""
        if restarts() >= MAX_REQUEUES:
            return None  # submitit then ends the job with "checkpoint function returned None"
        done = requeues.record(Path(args[1]))  # raises when requeueing again would loop: the trial fails
        print(f"sweep: {done.cause}; requeueing to resume from checkpoint.pt", flush=True)
        return DelayedSubmission(self, *args, **kwargs)


def main(argv: list[str]) -> int:
    """`python -m sweep.executors.job RUN_DIR`: train RUN_DIR/config.json in RUN_DIR as a launched job
    does (the run dir locked, an exit at SIGTERM, resumed from checkpoint.pt); `sweep sbatch` runs it."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sweep.executors.job", description=main.__doc__)
    parser.add_argument("run_dir", type=Path, help="a run dir holding config.json (a TrainConfig)")
    parser.add_argument(
        "--lock-wait-s", type=float, default=LOCK_WAIT_S,
        help=f"how long to wait for another job's lock on the run dir (default {LOCK_WAIT_S:.0f})",
    )  # fmt: skip
    args = parser.parse_args(argv)

    def body() -> int:
        config_path = RunPaths(args.run_dir).config
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError) as err:
            raise SweepError(f"{config_path}: {getattr(err, 'strerror', None) or err}") from None
        # run by hand or by `sweep sbatch`: a $SWEEP_STOP_AFTER_EPOCH of its own environment is honoured
        TrainJob(lock_wait_s=args.lock_wait_s, stop_after_epoch=stop_after_epoch())(config, str(args.run_dir))
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
