"""What a trial's job runs for a study with a [program]: the user's command or callable, in its own
process group, under the contract docs/guide/own-program.md documents.

The program gets SWEEP_RUN_DIR (the same on every start of the trial: its checkpoints go there),
SWEEP_PARAMS (a JSON file of every value), SWEEP_TRIAL, SWEEP_STUDY and SWEEP_RESTART (0 on the first
start). It logs one JSON object per epoch to $SWEEP_RUN_DIR/metrics.jsonl. Exit 0 with the study's
metric logged is success; anything else fails the trial with the last lines of its stderr. Its output
goes to `program.N.out` / `program.N.err` in the run dir, N counting its starts. A trial of several
ranks (`[resources] tasks_per_node`) runs one job, and so one program, per rank: rank 0 keeps the names
above and records the manifest, another rank K writes `program.N.rankK.out`, `program.rankK.pid`, ...

Stopping it (prune, cancel, SLURM preemption or requeue): SIGTERM to its whole process group, SIGKILL
after STOP_GRACE_S. The group id is kept in `program.pid` (each rank's in its own file), so a launcher
can finish the job even when the process that started the program was killed first. The program
inherits the run dir's lock (`job.run_dir_held`): no other job starts on the run dir while it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import submitit.helpers
from submitit.helpers import DelayedSubmission

from sweep import procs
from sweep.errors import SweepError
from sweep.executors import requeues
from sweep.executors.files import JobFiles
from sweep.executors.job import (
    LOCK_WAIT_S,
    MAX_REQUEUES,
    checked_rungs,
    checked_stop,
    quiet_sigcont,
    restarts,
    run_dir_held,
    stop_environment,
)
from trainer.files import write_atomic
from trainer.manifest import recorded_attempt
from trainer.metrics import read_epochs
from trainer.paths import RunPaths
from trainer.ranks import ranks_from_env
from trainer.stop import stop_after_epoch

if TYPE_CHECKING:  # the job process need not load the study parser (a third of its start-up)
    from sweep.study.spec import Program

STOP_GRACE_S = 10.0  # SIGTERM, then this long for the program to save and exit, then SIGKILL
STDERR_LINES = 5  # of a failed program's stderr, in the trial's reason
# A callable runs in a fresh interpreter (the study's `python`, which need not have sweep installed).
CALLABLE_RUNNER = """\
import importlib, json, os, pathlib, sys
sys.path.insert(0, os.getcwd())
module, _, name = sys.argv[1].partition(":")
params = json.loads(pathlib.Path(os.environ["SWEEP_PARAMS"]).read_text())
getattr(importlib.import_module(module), name)(params, pathlib.Path(os.environ["SWEEP_RUN_DIR"]))
"""


class ProgramFailed(Exception):
    """The program could not start, exited non-zero, or logged no study metric; the message says which."""


class _Stop(BaseException):
    """Raised by the signal handler while the job waits for its program."""


def argv(program: Program, values: dict[str, Any], run_dir: Path) -> list[str]:
    """The program's command line for one trial: placeholders filled, or the callable's runner."""
    if program.callable is not None:
        return [program.python or sys.executable, "-c", CALLABLE_RUNNER, program.callable]
    fields = {**values, "run_dir": str(run_dir), "trial": run_dir.name}
    return [arg.format(**fields) for arg in program.command]


def environment(
    program: Program,
    run_dir: Path,
    restart: int,
    *,
    stop_after_epoch: int | None = None,
    rung_epochs: str | None = None,
) -> dict[str, str]:
    """The program's environment: the launcher's, the study's [program] env, and the contract's variables
    (SWEEP_STOP_AFTER_EPOCH and SWEEP_RUNG_EPOCHS only when `stop_after_epoch` and `rung_epochs` are
    set: never inherited)."""
    env = stop_environment({**os.environ, **program.env}, stop_after_epoch, rung_epochs)
    env.update(
        SWEEP_RUN_DIR=str(run_dir),
        SWEEP_PARAMS=str(JobFiles(run_dir).params),
        SWEEP_TRIAL=run_dir.name,
        SWEEP_STUDY=run_dir.parent.name,
        SWEEP_RESTART=str(restart),
    )
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus:  # one thread per allocated core, not one per core of the node
        env.setdefault("OMP_NUM_THREADS", cpus)
    return env


class ProgramJob(submitit.helpers.Checkpointable):
    """The submitted callable of a [program] study: runs the program to its end and judges how it ended."""

    refused_requeue: str | None = None  # why `checkpoint` refused to requeue (set in the running job)

    def __init__(
        self,
        program: Program,
        metric: str,
        *,
        lock_wait_s: float = LOCK_WAIT_S,
        stop_after_epoch: int | None = None,
        rung_epochs: str | None = None,
    ) -> None:
        """`stop_after_epoch`: the program is started with $SWEEP_STOP_AFTER_EPOCH set to it (a pause: it
        exits 0 after that epoch's checkpoint and line, e.g. through `sweep.log_epoch`); None: without the
        variable, whatever the job's environment says. `rung_epochs`: likewise $SWEEP_RUNG_EPOCHS, the
        epochs at which `sweep.log_epoch` waits for the launcher's word (`trainer.rung_word`)."""
        self.program = program
        self.metric = metric
        self.lock_wait_s = lock_wait_s
        self.stop_after_epoch = checked_stop(stop_after_epoch)
        self.rung_epochs = checked_rungs(rung_epochs)

    def __call__(self, values: dict[str, Any], run_dir: str) -> dict[str, Any]:
        quiet_sigcont()
        folder = Path(run_dir).absolute()
        # a job pickled before lock_wait_s existed (a SLURM requeue across an upgrade) waits the default
        with run_dir_held(folder, lock_wait_s=getattr(self, "lock_wait_s", LOCK_WAIT_S)) as lock:
            return self._run(values, folder, lock)

    def _run(self, values: dict[str, Any], folder: Path, lock: int | None) -> dict[str, Any]:
        """Start the program, wait for it, judge how it ended; `lock` (the run dir's) goes to it too."""
        rank = ranks_from_env().rank  # run_dir_held set torchrun's variables of a trial of several
        restart, files = _count_start(folder, rank), JobFiles(folder)
        write_atomic(files.params, json.dumps(values, indent=2) + "\n")
        command = argv(self.program, values, folder)
        # a job pickled before stop_after_epoch or rung_epochs existed (a requeue across an upgrade) has none
        stop, rungs = getattr(self, "stop_after_epoch", None), getattr(self, "rung_epochs", None)
        env = environment(self.program, folder, restart, stop_after_epoch=stop, rung_epochs=rungs)
        out, err = files.program_output(restart, "out", rank), files.program_output(restart, "err", rank)
        with out.open("ab") as stdout, err.open("ab") as stderr:
            try:
                process = subprocess.Popen(
                    command,
                    cwd=self.program.workdir,
                    env=env,
                    stdout=stdout,
                    stderr=stderr,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group: stopped as a whole
                    # the run dir stays locked while the program runs, even if this job is killed
                    pass_fds=(lock,) if lock is not None else (),
                )
            except OSError as error:
                raise ProgramFailed(f"cannot start {command[0]!r}: {error.strerror or error}") from None
        write_atomic(files.rank_pid(rank), f"{process.pid} {self.program.stop_grace_s}\n")
        # manifest.json: the program's code, the machine, the times (torch's CUDA/GPUs would be this
        # wrapper's interpreter's, not the program's: nvidia-smi says the GPUs); rank 0's alone
        recorded = (
            recorded_attempt(folder, program_dir=Path(self.program.workdir), torch_details=False)
            if rank == 0
            else contextlib.nullcontext()
        )
        with recorded:
            code = _wait(process, self.program.stop_grace_s)
        if code != 0 and self.refused_requeue is not None:
            # `checkpoint` refused to requeue at the time limit and stopped the program: its error is the
            # trial's reason, also where it was lost on its way out of submitit's signal handler
            raise SweepError(self.refused_requeue)
        if code != 0:
            tail = _tail(err)
            raise ProgramFailed(f"{command[0]} exited with status {code}" + (f": {tail}" if tail else ""))
        metrics = RunPaths(folder).metrics
        history = read_epochs(metrics)
        if not any(self.metric in epoch for epoch in history):
            logged = sorted({key for epoch in history for key in epoch} - {"epoch"})
            said = f"it logged {', '.join(logged)}" if logged else "it logged no epoch"
            raise ProgramFailed(
                f"{command[0]} exited 0 without logging '{self.metric}' to $SWEEP_RUN_DIR/{metrics.name} "
                f"({said}); log it each epoch"
            )
        return {"epochs": len(history)}

    # submitit's own code accepts None here (no requeue); its annotation does not say so
    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission | None:  # type: ignore[override]
        """At a SLURM time limit or preemption: requeue the same call; the program resumes itself."""
        if restarts() >= MAX_REQUEUES:
            return None
        try:
            requeues.record(Path(args[1]))
        except SweepError as error:  # requeueing again would loop: the program stops, the trial fails
            self.refused_requeue = str(error)  # `_run` raises it again if this raise goes astray
            stop_leftovers(Path(args[1]))
            raise
        return DelayedSubmission(self, *args, **kwargs)


def _count_start(folder: Path, rank: int = 0) -> int:
    """How often rank `rank` started the program in this run dir before (SWEEP_RESTART), and count this
    start. Each rank counts its own: every start of the job starts all of them, at once."""
    path = JobFiles(folder).rank_starts(rank)
    try:
        before = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        before = 0
    write_atomic(path, f"{before + 1}\n")
    return before


TIME_LIMIT_SIGNAL_WAIT_S = 20.0  # for submitit's handler of the time-limit signal that killed the program


def _wait(process: subprocess.Popen[bytes], grace_s: float) -> int:
    """The program's exit status; SIGTERM or SIGINT to this job stops the program's group first."""

    def stop(signum: int, frame: Any) -> None:
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = process.wait()
        if code == -signal.SIGUSR2 and "SLURM_JOB_ID" in os.environ:
            # SLURM's end-of-time signal (submitit's --signal=USR2) reached the program and this job at
            # once: submitit's handler here decides the job's fate (requeue, or fail the trial after a
            # second time limit), not the program's death, and may run a moment after the program died
            time.sleep(TIME_LIMIT_SIGNAL_WAIT_S)
        return code
    except _Stop as stopped:
        for sig in previous:  # a second signal (the controller forwards its SIGTERM) must not cut this short
            signal.signal(sig, signal.SIG_IGN)
        stop_group(process.pid, grace_s=grace_s)
        if stopped.args[0] == signal.SIGINT:  # Ctrl-C, or a local job cancelled: as Python would
            raise KeyboardInterrupt from None
        os._exit(128 + int(stopped.args[0]))  # no result pickle: a requeued or relaunched job starts again
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_group(pgid: int, *, grace_s: float = STOP_GRACE_S, run_dir: Path | None = None) -> None:
    """SIGTERM every process of group `pgid`, then SIGKILL what is left after `grace_s`.

    With `run_dir`, only processes started for that run dir are touched (a reused group id is not ours).
    """
    stop_groups([pgid], grace_s=grace_s, run_dir=run_dir)


def stop_groups(pgids: list[int], *, grace_s: float, run_dir: Path | None = None) -> None:
    """`stop_group` of several groups at once (a trial's ranks' programs): one grace for all."""

    def members() -> list[int]:
        found = [pid for pgid in pgids for pid in procs.group_members(pgid)]
        if run_dir is None:
            return found
        return [pid for pid in found if procs.environ(pid, "SWEEP_RUN_DIR") == str(run_dir)]

    procs.terminate(members, grace_s=grace_s)


def program_grace(run_dir: Path) -> float:
    """The stop_grace_s of the program `run_dir`'s job started (0 when none was started)."""
    graces = [0.0]
    for path in JobFiles(run_dir).program_pids():
        with contextlib.suppress(OSError, ValueError, IndexError):
            graces.append(float(path.read_text().split()[1]))
    return max(graces)


def stop_leftovers(run_dir: Path) -> None:
    """Stop the programs of `run_dir` (every rank's) that outlived the job that started them (that job
    was killed)."""
    groups, grace_s = [], 0.0
    for path in JobFiles(run_dir).program_pids():
        try:
            pgid, grace = path.read_text().split()
            groups.append(int(pgid))
            grace_s = max(grace_s, float(grace))
        except (OSError, ValueError):
            continue
    if groups:
        stop_groups(groups, grace_s=grace_s, run_dir=run_dir.absolute())


def _tail(path: Path) -> str:
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in lines[-STDERR_LINES:] if line.strip())


def main(argv: list[str]) -> int:
    """`python -m sweep.executors.program RUN_DIR`: run the program `sweep sbatch` described in RUN_DIR."""
    if len(argv) != 1:
        print("usage: python -m sweep.executors.program RUN_DIR", file=sys.stderr)
        return 2
    from sweep.study.spec import Program

    run_dir = Path(argv[0])
    try:  # run by `sweep sbatch`: a $SWEEP_STOP_AFTER_EPOCH of its own environment is honoured
        stop = stop_after_epoch()
    except SweepError as err:  # not a positive integer
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        job = json.loads(JobFiles(run_dir).program.read_text())
        program = Program.from_dict(job["program"])
        ProgramJob(program, job["metric"], stop_after_epoch=stop)(job["values"], str(run_dir))
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {JobFiles(run_dir).program}: {err}", file=sys.stderr)
        return 2
    except ProgramFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
