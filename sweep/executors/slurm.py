"""The `slurm` executor: submitit's SlurmExecutor, and its jobs as SLURM reports them
(`sweep.executors.slurm_queries`).

[resources] become sbatch options. Timeouts and preemptions requeue the job (`TrainJob` is
checkpointable) and the trainer resumes from checkpoint.pt.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import submitit

from sweep._compat import slurm_parameter_names
from sweep.executors.base import (
    CANCEL_DEADLINE_S,
    Executor,
    Job,
    JobFn,
    Outcome,
    pickled_outcome,
)
from sweep.executors.files import JobFiles, log_paths
from sweep.executors.job import MAX_REQUEUES
from sweep.executors.slurm_queries import (
    GONE,
    JobState,
    SlurmUnavailable,
    StateCache,
    job_states,
    require_slurm,
    scancel,
)
from sweep.executors.slurm_submit import Submitter
from sweep.polling import wait_until
from sweep.study.spec import Resources

SRUN_TAIL_BYTES = 4096  # of a lost job's stderr, searched for srun's outage line


def job_name(study: str, trial: int | str) -> str:
    """The name of a trial's SLURM job, as squeue shows it (`sweep sbatch` gives its scripts the same)."""
    return f"sweep-{study}-{trial}"


def slurm_mem(mem_gb: float) -> str:
    """GiB as SLURM's --mem value, in whole MB (1 GiB is 1024 MB to SLURM): 2.5 -> "2560MB"."""
    return f"{round(mem_gb * 1024)}MB"


def slurm_parameters(resources: Resources) -> dict[str, Any]:
    """[resources] as submitit SlurmExecutor parameters (gpus -> gpus_per_node, mem_gb -> mem, ...).

    Extras from [resources.slurm] that submitit has no parameter for go to `additional_parameters`,
    which submitit writes as `#SBATCH --name=value` lines.
    """
    params: dict[str, Any] = {"nodes": 1, "ntasks_per_node": 1, "cpus_per_task": resources.cpus}
    if resources.gpus:
        params["gpus_per_node"] = resources.gpus
    if resources.mem_gb is not None:
        params["mem"] = slurm_mem(resources.mem_gb)
    if resources.timeout_min is not None:
        params["time"] = resources.timeout_min  # minutes
    if resources.partition is not None:
        params["partition"] = resources.partition
    known = slurm_parameter_names()
    extras = {key: value for key, value in resources.slurm.items() if key not in known}
    params.update({key: value for key, value in resources.slurm.items() if key in known})
    if extras:
        params["additional_parameters"] = extras
    return params


class SlurmJob(Job):
    """A SLURM job, submitted by this launcher or re-attached by id; its state comes from squeue/sacct,
    shared with the other jobs of the executor in one cached query."""

    def __init__(self, job_id: str, folder: Path, states: StateCache) -> None:
        self.job_id = job_id
        self.folder = folder
        self._states = states
        self._result = log_paths(folder, job_id).result_pickle  # stat at every poll: made once

    def state(self, *, fresh: bool = False) -> JobState | None:
        """What SLURM says of the job now; None when squeue/sacct do not answer."""
        try:
            return self._states.get(self.job_id, fresh=fresh)
        except SlurmUnavailable:
            return None

    def waiting(self) -> str | None:
        state = self.state()
        if state is None or state.state != "PENDING" or state.reason in ("", "None"):
            return None
        return state.reason

    def describe(self) -> str:
        state = self.state()
        if state is None:
            return "slurm does not answer"
        return f"slurm {state.state}" + ("" if state.live else ", ended")

    def done(self) -> bool:
        if self._result.exists():
            return True
        state = self.state()
        return state is not None and not state.live  # pending, running, requeued: not done

    def cancel(self) -> None:
        # a controller that does not answer in time (30 s) leaves the job to end on its own: the
        # launcher goes on, and ignores what the job leaves
        with contextlib.suppress(SlurmUnavailable):
            scancel([self.job_id])
        wait_until(lambda: not (self.state(fresh=True) or _UNKNOWN).live, CANCEL_DEADLINE_S)

    def stop_soon(self) -> None:
        # a pruned trial's: one scancel, no squeue until the job is gone (the launcher forgets it)
        with contextlib.suppress(SlurmUnavailable):
            scancel([self.job_id])
        self._states.forget(self.job_id)

    def outcome(self) -> Outcome:
        pickled = pickled_outcome(self.folder, self.job_id)
        state = None if pickled is not None else self.state()  # as last queried: the job ended
        self._states.forget(self.job_id)
        if pickled is not None:
            return pickled
        known = state is not None and state.state != GONE
        said = f"ended {state.state}" if known and state is not None else "is unknown to squeue and sacct"
        logs = log_paths(self.folder, self.job_id)
        srun = srun_outage(logs.stderr)
        if srun is not None:  # the job never ran the trial: start it again, uncounted
            return Outcome("lost", srun, outage=True)
        return Outcome("lost", f"SLURM job {self.job_id} {said} without a result; see {logs.stderr}")


def srun_outage(stderr: Path) -> str | None:
    """srun's line when the job's srun could not reach slurmctld (a controller restarted under a job that
    was starting: srun gives up after about 10 s, and the job ends without having run anything)."""
    try:
        with stderr.open("rb") as handle:
            handle.seek(max(0, stderr.stat().st_size - SRUN_TAIL_BYTES))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return None
    for line in tail.splitlines():
        if line.startswith("srun: error:") and "Unable to contact slurm controller" in line:
            return line.strip()
    return None


_UNKNOWN = JobState("", "UNKNOWN", "none")


def attach(job_id: str, run_dir: Path, states: StateCache | None = None) -> SlurmJob:
    """The SLURM job `job_id` of `run_dir`, submitted by any launcher."""
    return SlurmJob(job_id, JobFiles(run_dir).folder, states or StateCache())


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, resources: Resources, *, parallel: int = 1, **settings: Any) -> None:
        super().__init__(resources, parallel=parallel, **settings)
        require_slurm()  # before the launcher touches the study: one clear line, exit 2
        self.parameters = slurm_parameters(resources)
        self.states = StateCache(self.waits.slurm_query_s)
        self.submitter = Submitter(self.waits.scheduler_outage_min * 60, self.out)

    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        """sbatch the trial's job (see `sweep.executors.slurm_submit`).

        Raises:
            SubmitHeld: a submission limit; SweepError: sbatch refused the job, or an outage outlasted
                [waits] scheduler_outage_min.
        """
        # submitit's own requeue bound (timeouts only, default 3) is raised to ours, which counts all requeues
        folder = JobFiles(run_dir).folder
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_REQUEUES)
        name = job_name(run_dir.parent.name, run_dir.name)
        executor.update_parameters(job_name=name, **self.parameters)
        job_id = self.submitter.submit(executor, fn, (config, str(run_dir)), name, what=f"for {run_dir}")
        self.states.soon()
        return SlurmJob(job_id, folder, self.states)

    def attach(self, job_id: str, run_dir: Path) -> Job:
        return attach(job_id, run_dir, self.states)

    def orphan(self, run_dir: Path, *, after: str | None = None) -> str | None:
        return orphan(run_dir, after=after)


def orphan(run_dir: Path, *, after: str | None = None) -> str | None:
    """The live job of `run_dir` newer than `after` that a launcher submitted but never stored (it died
    first); `sweep cancel` and a restarted launcher find it here."""
    # submitit names each submission's script <job id>_submission.sh as soon as sbatch has answered
    ids = JobFiles(run_dir).sbatch_submissions()
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


EXECUTOR = SlurmExecutor
