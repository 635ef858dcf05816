"""The `debug` executor: each job runs in the launcher's process, synchronously inside `submit`.

For tests and debugging. The job has finished when `submit` returns, so a pruner cannot stop a debug
job early: the trial is still told PRUNED, but all its epochs ran. Its output goes to
`<run_dir>/debug.log`.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.executors.base import Executor, Job, JobFn, Outcome
from sweep.executors.files import JobFiles

if TYPE_CHECKING:
    from sweep.study.spec import Resources


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


def attach(job_id: str, run_dir: Path) -> Job:
    """An in-process job died with the launcher that ran it."""
    return DebugJob(job_id, Outcome("lost", f"in-process job {job_id} ended with its launcher"))


class DebugExecutor(Executor):
    name = "debug"

    def __init__(self, resources: Resources | None = None, *, parallel: int = 1, **settings: Any) -> None:
        super().__init__(resources, parallel=parallel, **settings)  # a debug job asks nothing of them
        self._count = 0

    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        self._count += 1
        job_id = f"debug-{os.getpid()}-{self._count}"
        run_dir.mkdir(parents=True, exist_ok=True)
        with JobFiles(run_dir).debug_log.open("a") as log, contextlib.redirect_stdout(log):
            try:
                fn(config, str(run_dir))
                outcome = Outcome("success")
            except Exception:  # the job's failure is the trial's, not the launcher's
                outcome = Outcome("error", traceback.format_exc())
        return DebugJob(job_id, outcome)

    def attach(self, job_id: str, run_dir: Path) -> Job:
        return attach(job_id, run_dir)


EXECUTOR = DebugExecutor
