"""The `slurm` executor: submitit's SlurmExecutor, and its jobs as SLURM reports them
(`sweep.executors.slurm_queries`).

[resources] become sbatch options. Timeouts and preemptions requeue the job (`TrainJob` is
checkpointable) and the trainer resumes from checkpoint.pt.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import submitit

from sweep._compat import slurm_parameter_names
from sweep.errors import SweepError
from sweep.executors.base import (
    CANCEL_DEADLINE_S,
    Executor,
    Job,
    JobFn,
    Outcome,
    RankEnd,
    job_outcome,
    pickled_outcome,
)
from sweep.executors.files import JobFiles, log_paths
from sweep.executors.job import MAX_REQUEUES
from sweep.executors.slurm_queries import (
    GONE,
    SUBMITTED,
    WAIT_QUERY_S,
    Canceller,
    JobState,
    SlurmUnavailable,
    StateCache,
    job_states,
    partition_nodes,
    require_slurm,
    scancel,
)
from sweep.executors.slurm_requeue import attempt_restart, killed_by_signal, verdict
from sweep.executors.slurm_submit import Submitter
from sweep.polling import wait_until
from sweep.study.spec import Resources

SRUN_TAIL_BYTES = 4096  # of a lost job's stderr, searched for srun's outage line
SRUN_TASKS_BYTES = (
    16384  # of a failed job's stderr, searched for srun's failed task (rank 0's traceback after it)
)
SRUN_SEVERAL_TASKS = ("--kill-on-bad-exit=1",)  # srun's options for a trial of several tasks: one fate


def check_nodes(resources: Resources) -> None:
    """Raise a one-line SweepError when a trial asks for more nodes than its partition has (sinfo, once)."""
    if resources.nodes <= 1:
        return
    offered = partition_nodes(resources.partition)
    if offered is not None and resources.nodes > offered:
        where = f"partition '{resources.partition}'" if resources.partition else "the default partition"
        raise SweepError(
            f"[resources] nodes = {resources.nodes}, but {where} has {offered} node"
            f"{'s' if offered != 1 else ''} (sinfo); lower nodes or choose a larger [resources] partition"
        )


def job_name(study: str, trial: int | str) -> str:
    """The name of a trial's SLURM job, as squeue shows it (`sweep sbatch` gives its scripts the same)."""
    return f"sweep-{study}-{trial}"


def slurm_mem(mem_gb: float) -> str:
    """GiB as SLURM's --mem value, in whole MB (1 GiB is 1024 MB to SLURM): 2.5 -> "2560MB"."""
    return f"{round(mem_gb * 1024)}MB"


def slurm_parameters(resources: Resources) -> dict[str, Any]:
    """[resources] as submitit SlurmExecutor parameters (gpus -> gpus_per_node, mem_gb -> mem, ...).

    Extras from [resources.slurm] that submitit has no parameter for go to `additional_parameters`,
    which submitit writes as `#SBATCH --name=value` lines. A trial of several tasks (`nodes` x
    `tasks_per_node` > 1) runs them with srun's `--kill-on-bad-exit=1`.
    """
    params: dict[str, Any] = {
        "nodes": resources.nodes,
        "ntasks_per_node": resources.tasks_per_node,
        "cpus_per_task": resources.cpus,
    }
    if resources.tasks > 1:  # one rank that fails ends the job: no rank left waiting for it
        params["srun_args"] = list(SRUN_SEVERAL_TASKS)
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

    def __init__(
        self,
        job_id: str,
        folder: Path,
        states: StateCache,
        *,
        submitted: bool = False,
        canceller: Canceller | None = None,
    ) -> None:
        """`submitted`: by this launcher just now (it has not been requeued yet); `canceller`: the
        launcher's, which `stop_soon` hands its scancel to."""
        self._canceller = canceller
        self.job_id = job_id
        self.folder = folder
        self._states = states
        self._result = log_paths(folder, job_id).result_pickle  # stat at every poll: made once
        self._submitted = submitted
        # the result file as last judged (`_result_counts`): its stamp, and whether it is the job's end
        self._judged: tuple[tuple[int, int, int], bool | None] | None = None
        self._attempt: int | None = None  # the restart count of the attempt that stored it

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
        # A job re-attached since the cache's last query is asked about now, never shown as the PENDING
        # a job just submitted is taken for; at most one such query a second (a launcher taking over
        # many trials at once), the rest said unknown until the next poll, brought forward to FAST_S.
        if self._states.answered(self.job_id):
            state = self.state()
        elif self._states.since_query() >= WAIT_QUERY_S:
            state = self.state(fresh=True)
        else:
            self._states.soon()
            return "slurm state not asked yet: the next poll asks"
        if state is None:
            return "slurm does not answer"
        return f"slurm {state.state}" + ("" if state.live else ", ended")

    def restarts(self) -> int | None:
        state = self.state()
        if state is not None and state.source == SUBMITTED and self._submitted:
            return 0
        return state.restarts if state is not None else None

    def done(self) -> bool:
        if self._result_counts():
            return True
        state = self.state()
        return state is not None and not state.live  # pending, running, requeued: not done

    def _result_counts(self) -> bool:
        """Whether the job's result file is there and is its end: not one an attempt stored whose
        program SLURM's requeue killed (`sweep.executors.slurm_requeue`), the job running again."""
        try:
            stat = self._result.stat()
        except OSError:
            return False
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._judged is not None and self._judged[0] == stamp and self._judged[1] is not None:
            return self._judged[1]
        first = self._judged is None or self._judged[0] != stamp
        if first:
            pickled = pickled_outcome(self.folder, self.job_id)
            if pickled is None or pickled.status != "error" or not killed_by_signal(pickled.detail):
                self._judged = (stamp, True)
                return True
            self._attempt = attempt_restart(self.folder.parent, self.job_id)
        said = verdict(self.state(fresh=first), self._attempt)  # asked once fresh, then as polled
        if said == "unsure":
            self._judged = (stamp, None)
            if first:
                self._states.soon()
            return False
        self._judged = (stamp, said == "ended")
        return said == "ended"

    def cancel(self) -> None:
        # a controller that does not answer in time (30 s) leaves the job to end on its own: the
        # launcher goes on, and ignores what the job leaves
        with contextlib.suppress(SlurmUnavailable):
            scancel([self.job_id])
        wait_until(self._gone, CANCEL_DEADLINE_S, every_s=WAIT_QUERY_S)  # squeue once a second at most

    def _gone(self) -> bool:
        return not (self.state(fresh=True) or _UNKNOWN).live

    def stop_soon(self) -> None:
        # a pruned trial's: one scancel, no squeue until the job is gone (the launcher forgets it); during
        # an outage the launcher's Canceller sends it once the controller answers, without blocking
        if self._canceller is not None:
            self._canceller.cancel(self.job_id)
        else:
            with contextlib.suppress(SlurmUnavailable):
                scancel([self.job_id])
        self._states.forget(self.job_id)

    def outcome(self) -> Outcome:
        # a result an attempt left before SLURM requeued the job is not the job's (it ended without one)
        stale = self._judged is not None and self._judged[1] is False and not self._result_counts()
        logs = log_paths(self.folder, self.job_id)
        pickled = None if stale else job_outcome(self.folder, self.job_id, srun_first_failure(logs.stderr))
        state = None if pickled is not None else self.state()  # as last queried: the job ended
        self._states.forget(self.job_id)
        if pickled is not None:
            return pickled
        known = state is not None and state.state != GONE
        said = f"ended {state.state}" if known and state is not None else "is unknown to squeue and sacct"
        srun = srun_outage(logs.stderr)
        if srun is not None:  # the job never ran the trial: start it again, uncounted
            return Outcome("lost", srun, outage=True)
        return Outcome("lost", f"SLURM job {self.job_id} {said} without a result; see {logs.stderr}")


# srun's line for a task that failed (--kill-on-bad-exit), then its end of the step at the first one
SRUN_TASK_FAILED = re.compile(r"^srun: error: \S+: tasks? (?P<rank>\d+)[-\d,]*: (?P<how>.+)$")
SRUN_STEP_ENDED = "_step_signal: Terminating StepId="


def srun_first_failure(stderr: Path) -> RankEnd | None:
    """The task of a job of several that failed first, as srun said it in the job's stderr (the last
    step it ended: an earlier attempt's lines come before); None when srun ended no step for a task."""
    lines = _tail(stderr, SRUN_TASKS_BYTES).splitlines()
    ends = [index for index, line in enumerate(lines) if SRUN_STEP_ENDED in line]
    if not ends:
        return None
    for line in reversed(lines[: ends[-1]]):
        found = SRUN_TASK_FAILED.match(line.strip())
        if found is not None:
            how = found["how"].strip()
            code = how.removeprefix("Exited with exit code ")
            if code == how:  # srun's name of the signal that killed it: Killed, Segmentation fault, ...
                return RankEnd(int(found["rank"]), f"was killed ({how})", signalled=True)
            # 128 + N: a job's wrapper that exited at signal N (`job.run_dir_held`)
            by_signal = code.isdigit() and int(code) > 128
            return RankEnd(int(found["rank"]), f"exited with exit code {code}", signalled=by_signal)
    return None


def _tail(path: Path, size: int) -> str:
    """The last `size` bytes of `path`; "" when it cannot be read."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def srun_outage(stderr: Path) -> str | None:
    """srun's line when the job's srun could not reach slurmctld (a controller restarted under a job that
    was starting: srun gives up after about 10 s, and the job ends without having run anything)."""
    for line in _tail(stderr, SRUN_TAIL_BYTES).splitlines():
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
        check_nodes(resources)
        self.parameters = slurm_parameters(resources)
        self.states = StateCache(self.waits.slurm_query_s)
        self.submitter = Submitter(self.waits.scheduler_outage_min * 60, self.out)
        self.canceller = Canceller(self.waits.scheduler_outage_min * 60, self.out)

    def submit(self, fn: JobFn, config: dict[str, Any], run_dir: Path) -> Job:
        """sbatch the trial's job (see `sweep.executors.slurm_submit`).

        Raises:
            SubmitHeld: a submission limit, or sbatch did not reach the controller (`retry_s` set);
                SweepError: sbatch refused the job, or an outage outlasted [waits] scheduler_outage_min.
        """
        # submitit's own requeue bound (timeouts only, default 3) is raised to ours, which counts all requeues
        folder = JobFiles(run_dir).folder
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_REQUEUES)
        name = job_name(run_dir.parent.name, run_dir.name)
        executor.update_parameters(job_name=name, **self.parameters)
        job_id = self.submitter.submit(
            executor, fn, (config, str(run_dir)), name, what=f"for {run_dir}", hold=True
        )  # an outage holds the trial: the launcher tries again on the back-off's schedule
        self.states.soon()
        return SlurmJob(job_id, folder, self.states, submitted=True, canceller=self.canceller)

    def attach(self, job_id: str, run_dir: Path) -> Job:
        return SlurmJob(job_id, JobFiles(run_dir).folder, self.states, canceller=self.canceller)

    def orphan(self, run_dir: Path, *, after: str | None = None) -> str | None:
        return orphan(run_dir, after=after)

    def finish(self) -> None:
        self.canceller.finish()


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
