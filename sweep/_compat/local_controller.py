"""submitit's local job controller, made to give a job's tasks (a trial's ranks) one fate.

Run as `python -m sweep._compat.local_controller FOLDER` in place of submitit's `submitit.local._local`
(`sweep._compat.own_session` swaps the command while the `local` executor submits). submitit's
`Controller` waits until every task has exited, so a rank that fails leaves the others blocked in
a collective (an all-reduce waits for the dead rank until torch's timeout, half an hour, or for ever).
This one ends the job at the first task that exits with a status other than 0 (or submitit's requeue
status), as srun's `--kill-on-bad-exit` ends a SLURM job: SIGTERM to the tasks still running (a
trainer exits at once, a program's job stops its program first), SIGKILL to those left after the grace
$SWEEP_RANKS_GRACE_S (a rank stuck in C code never runs its SIGTERM handler). It says which rank on
its stdout (the run dir's `controller.log`), which the job's outcome reads back (`first_failure`).
`Controller` is submitit's private class; its `wait` is the one method replaced, and its timeout
signal is sent as submitit sends it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from submitit.local.local import LOCAL_REQUEUE_RETURN_CODE, Controller, LocalJobEnvironment

GRACE_VARIABLE = "SWEEP_RANKS_GRACE_S"  # set by the local executor: its stop grace for the job
DEFAULT_GRACE_S = 15.0
KILL_WAIT_S = 5.0  # after SIGKILL: for the kernel to take the tasks down
# What the controller says of the first task that failed (`first_failure` reads it back)
FIRST_FAILURE = "sweep: job {job}: rank {rank} exited with status {code}; stopping the other ranks"
FIRST_FAILURE_LINE = re.compile(
    r"^sweep: job (?P<job>\S+): rank (?P<rank>\d+) exited with status (?P<code>-?\d+);", re.M
)


def first_failure(log: str, job_id: str) -> tuple[int, int] | None:
    """(rank, exit status) of the task of job `job_id` that failed first, as its controller said it
    in `log` (the run dir's controller.log, which every job of the run dir writes); None if it did not."""
    said = [found for found in FIRST_FAILURE_LINE.finditer(log) if found["job"] == job_id]
    return (int(said[-1]["rank"]), int(said[-1]["code"])) if said else None


def first_bad_exit(codes: Sequence[int | None]) -> int | None:
    """The index of the first task that ended with a failure (not 0, not submitit's requeue status)."""
    for index, code in enumerate(codes):
        if code not in (None, 0, LOCAL_REQUEUE_RETURN_CODE):
            return index
    return None


def grace_s() -> float:
    """How long the tasks left get between SIGTERM and SIGKILL ($SWEEP_RANKS_GRACE_S)."""
    try:
        return max(0.0, float(os.environ.get(GRACE_VARIABLE, DEFAULT_GRACE_S)))
    except ValueError:
        return DEFAULT_GRACE_S


class RanksController(Controller):
    """submitit's Controller whose wait ends every task once one of them fails."""

    def wait(self, freq: int = 24) -> Sequence[int | None]:
        """Wait for every task to end, for the timeout, or for a task to fail (then stop the others);
        the tasks' exit statuses (None: still running at the timeout, as submitit's)."""
        assert self.tasks, "Nothing to do!"
        steps = freq * self.timeout_s
        almost_timeout = freq * (self.timeout_s - self.signal_delay_s)
        for step in range(steps):
            codes = [task.poll() for task in self.tasks]
            if all(code is not None for code in codes):
                return codes
            bad = first_bad_exit(codes)
            if bad is not None:
                self.stop_others(bad, codes[bad], freq=freq)
                return [task.poll() for task in self.tasks]
            if step == almost_timeout:
                self._forward_signal(LocalJobEnvironment._usr_sig())
            time.sleep(1.0 / freq)
        return [task.poll() for task in self.tasks]

    def stop_others(self, rank: int, code: int | None, *, freq: int) -> None:
        """SIGTERM the tasks still running after task `rank` ended with `code`, SIGKILL after the grace."""
        print(FIRST_FAILURE.format(job=self.pid, rank=rank, code=code), flush=True)
        for sig, wait_s in ((signal.SIGTERM, grace_s()), (signal.SIGKILL, KILL_WAIT_S)):
            running = [task for task in self.tasks if task.poll() is None]
            for task in running:
                with contextlib.suppress(OSError):  # gone meanwhile
                    task.send_signal(sig)
            end = time.monotonic() + wait_s
            while any(task.poll() is None for task in running) and time.monotonic() < end:
                time.sleep(1.0 / freq)
            if all(task.poll() is not None for task in running):
                return


if __name__ == "__main__":
    assert len(sys.argv) == 2, "Usage: python -m sweep._compat.local_controller <submitit_folder>"
    # SIGINT is submitit's cancel (a prune, `sweep cancel`): heard even when the launcher was started with
    # it ignored (`sweep launch ... &` in a script), which this process would otherwise inherit
    signal.signal(signal.SIGINT, signal.default_int_handler)
    RanksController(Path(sys.argv[1])).run()
