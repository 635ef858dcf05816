"""torchrun's variables for each task of a trial of several (`[resources] nodes` x `tasks_per_node`).

submitit runs the job's function once per task: under SLURM one per srun task (SLURM_PROCID, ...), under
the `local` executor `tasks_per_node` processes on this machine. Each task then gets what torchrun would
give it, so `torch.distributed.init_process_group()` with the default `env://` works unchanged: RANK,
LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR (the job's first node; 127.0.0.1 on one node),
MASTER_PORT (from the job id: two trials on one node never share one), and CUDA_VISIBLE_DEVICES of its
own GPU when the node's GPUs are as many as its tasks. The shape is submitit's
`helpers.TorchDistributedEnvironment`. A job of one task is left as it is.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import submitit

PORT_BASE = 15_000  # MASTER_PORT lies in PORT_BASE .. PORT_BASE + PORT_SPAN - 1, below Linux's
PORT_SPAN = 17_000  # ephemeral ports (32768 up): no connection of the machine's is given one of them


class TaskEnvironment(Protocol):
    """What submitit's JobEnvironment says of this task."""

    job_id: str
    global_rank: int
    local_rank: int
    num_tasks: int
    num_nodes: int
    hostnames: list[str]


def master_port(job_id: str) -> int:
    """The port of the job's rendezvous: its id's digits (an array task's too) spread over PORT_SPAN
    ports, so jobs whose ids are closer than that never share one."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return PORT_BASE + int(digits) % PORT_SPAN


def torch_variables(task: TaskEnvironment, visible_gpus: str | None = None) -> dict[str, str]:
    """torchrun's variables for `task`; {} for a job of one task. `visible_gpus`: the task's
    CUDA_VISIBLE_DEVICES, narrowed to the task's own GPU when the node has one per task."""
    if task.num_tasks <= 1:
        return {}
    per_node = max(1, task.num_tasks // max(1, task.num_nodes))
    variables = {
        "RANK": str(task.global_rank),
        "LOCAL_RANK": str(task.local_rank),
        "WORLD_SIZE": str(task.num_tasks),
        "LOCAL_WORLD_SIZE": str(per_node),
        "MASTER_ADDR": "127.0.0.1" if task.num_nodes <= 1 else task.hostnames[0],
        "MASTER_PORT": str(master_port(task.job_id)),
    }
    gpus = [gpu for gpu in (visible_gpus or "").split(",") if gpu.strip()]
    if len(gpus) == per_node and per_node > 1:
        variables["CUDA_VISIBLE_DEVICES"] = gpus[task.local_rank].strip()
    return variables


def export_torch_variables() -> dict[str, str]:
    """Set this task's torchrun variables in os.environ when it is a task of a submitit job of several;
    what was set ({} otherwise: one task, or no submitit job, as in the debug executor). A rank other
    than 0 also forgets the result its earlier attempt left (`forget_earlier_result`)."""
    import submitit
    from submitit.slurm.slurm import SlurmJobEnvironment

    try:
        if os.environ.get("SUBMITIT_EXECUTOR"):  # a job submitit started: local or slurm
            task = submitit.JobEnvironment()
            forget_earlier_result(task)
        elif os.environ.get("SLURM_JOB_ID"):  # `sweep sbatch`'s script: srun's tasks
            task = SlurmJobEnvironment()
        else:
            return {}
        variables = torch_variables(task, os.environ.get("CUDA_VISIBLE_DEVICES"))  # type: ignore[arg-type]
    except (RuntimeError, KeyError, ValueError):  # not inside a job submitit knows
        return {}
    os.environ.update(variables)
    return variables


def forget_earlier_result(task: submitit.JobEnvironment) -> None:
    """Remove the result an earlier attempt of this task left, when it is a rank other than 0 of a job
    of several: SLURM runs a requeued job again under its id, and the job's outcome takes the error of
    the rank that failed first (`sweep.executors.base.job_outcome`), which must be this attempt's. Rank
    0's result is judged as the job's own (`sweep.executors.slurm_requeue`)."""
    if task.num_tasks > 1 and task.global_rank > 0:
        with contextlib.suppress(OSError, KeyError):  # no submitit folder known: nothing to forget
            task.paths.result_pickle.unlink(missing_ok=True)
