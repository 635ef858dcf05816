"""Which of this machine's GPUs a new local job gets, so that `--parallel N` local jobs spread over them.

submitit's LocalExecutor gives every job the first `gpus_per_node` devices: four parallel trials on a
four-GPU workstation would all train on GPU 0. `GpuPool` hands each new job the GPUs that the fewest
live jobs hold (sharing only when there are more jobs than GPUs), in the ids of the launcher's own
CUDA_VISIBLE_DEVICES when it has one. The launcher never imports torch, so the GPUs are counted by
`nvidia-smi`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

NVIDIA_SMI_TIMEOUT_S = 20.0


def machine_gpus() -> list[int]:
    """The GPU ids a job of this launcher may use: CUDA_VISIBLE_DEVICES when set, else nvidia-smi's.

    Empty when neither says (no GPU, no driver), or when CUDA_VISIBLE_DEVICES names GPUs by UUID,
    which submitit cannot pass on.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [part.strip() for part in visible.split(",") if part.strip()]
        return [int(i) for i in ids] if all(i.isdigit() for i in ids) else []
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line) for line in (line.strip() for line in listed.splitlines()) if line.isdigit()]


def job_gpus(pid: int) -> list[int]:
    """The GPUs a running local job was given: CUDA_VISIBLE_DEVICES in its process's environment."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []
    for entry in environ:
        if entry.startswith(b"CUDA_VISIBLE_DEVICES="):
            value = entry.split(b"=", 1)[1].decode()
            return [int(i) for i in value.split(",") if i.strip().isdigit()]
    return []


class GpuPool:
    """The machine's GPUs and the jobs holding them; `take` picks for a new job."""

    def __init__(self, gpus: list[int]) -> None:
        self.gpus = gpus
        self.held: dict[str, tuple[list[int], Callable[[], bool]]] = {}  # job id -> (gpus, is it live)

    def hold(self, job_id: str, gpus: list[int], alive: Callable[[], bool]) -> None:
        """Record that job `job_id` holds `gpus` while `alive()` says it runs."""
        self.held[job_id] = (gpus, alive)

    def take(self, count: int) -> list[int]:
        """The `count` GPUs held by the fewest live jobs (in the machine's order among equals)."""
        self.held = {job: entry for job, entry in self.held.items() if entry[1]()}
        load = Counter(gpu for gpus, _ in self.held.values() for gpu in gpus)
        return sorted(self.gpus, key=lambda gpu: (load[gpu], self.gpus.index(gpu)))[:count]
