"""Executors: where a trial's job runs. One small interface (`base`), the backends side by side.

* `debug`: in the launcher's process, synchronously inside `submit` (tests and debugging).
* `local`: submitit's LocalExecutor, one real subprocess per job, spread over the machine's GPUs.
* `slurm`: submitit's SlurmExecutor; [resources] become sbatch options; requeued jobs resume.
* `auto`: slurm when `sbatch` is on PATH, local otherwise.

A job is re-attached after a launcher restart from what its trial stored, (kind, job_id, run_dir),
with `attach`, no executor needed (`sweep cancel` does so for any study's jobs); `orphan` finds the
job a launcher started but died before storing, where the backend defines a module-level `orphan`.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.errors import Printer, SweepError
from sweep.executors.base import Executor, Job, JobFn, Outcome, wait_for_end

if TYPE_CHECKING:
    from sweep.study.spec import Resources, Waits

# name -> the module of its backend, imported when asked for: a job process that needs one backend (or
# none: a program's job) does not load the others.
# Every backend module defines EXECUTOR (its class, built as `EXECUTOR(resources, parallel=N)`) and
# `attach(job_id, run_dir)`.
REGISTRY = {
    "slurm": "sweep.executors.slurm",
    "local": "sweep.executors.local",
    "debug": "sweep.executors.debug",
}
EXECUTORS = ("auto", *REGISTRY)


def resolve(name: str) -> str:
    """The executor `auto` stands for here: slurm when `sbatch` is on PATH, else local."""
    if name == "auto":
        return "slurm" if shutil.which("sbatch") else "local"
    return name


def chosen(name: str) -> str:
    """The executor `name` stands for here and why, as a dry run says it: `slurm (auto: sbatch found at
    /usr/bin/sbatch)`, `local (auto: no sbatch on PATH)`, `debug (--executor debug)`."""
    kind = resolve(name)
    if name != "auto":
        return f"{kind} (--executor {name})"
    sbatch = shutil.which("sbatch")
    return f"slurm (auto: sbatch found at {sbatch})" if sbatch else "local (auto: no sbatch on PATH)"


def make_executor(
    name: str,
    resources: Resources,
    *,
    parallel: int = 1,
    waits: Waits | None = None,
    out: Printer | None = None,
) -> Executor:
    """The executor called `name` (auto | slurm | local | debug), requesting `resources` per job, of
    which `parallel` run at once; `waits`: how often it asks SLURM, how long it waits out an outage."""
    name = resolve(name)
    if name not in REGISTRY:
        raise SweepError(f"unknown executor '{name}'; choose one of {', '.join(EXECUTORS)}")
    executor: type[Executor] = importlib.import_module(REGISTRY[name]).EXECUTOR
    return executor(resources, parallel=parallel, waits=waits, out=out)


def attach(kind: str, job_id: str, run_dir: Path) -> Job:
    """The job `job_id` that a `kind` executor started for `run_dir`, by any launcher."""
    if kind not in REGISTRY:
        raise SweepError(
            f"unknown executor '{kind}' stored with job {job_id}; choose one of {', '.join(REGISTRY)}"
        )
    return importlib.import_module(REGISTRY[kind]).attach(job_id, run_dir)


def orphan(kind: str, run_dir: Path, *, after: str | None = None) -> str | None:
    """The live job of `run_dir` other than `after` that a `kind` executor started, with no executor:
    one a launcher died before storing. None when there is none, or the backend cannot look here."""
    if kind not in REGISTRY:
        return None
    find = getattr(importlib.import_module(REGISTRY[kind]), "orphan", None)
    return find(run_dir, after=after) if find is not None else None


__all__ = [
    "EXECUTORS",
    "Executor",
    "Job",
    "JobFn",
    "Outcome",
    "attach",
    "chosen",
    "make_executor",
    "orphan",
    "resolve",
    "wait_for_end",
]
