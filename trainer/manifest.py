"""manifest.json: what each attempt of a run ran on, so results can be traced to code and machine.

Every start of a run (a first start, a requeue, a relaunch) appends one `Attempt` to the run dir's
manifest.json and sets its end time when it stops: the code (git commit of the program's folder,
whether the tree was dirty and a hash of `git diff HEAD`), Python, torch, CUDA and cuDNN versions, the
GPUs and their driver, the host, the SLURM job, and a hash of the installed packages. An attempt
killed outright keeps `ended` None.

Nothing here may stop a run: a missing git or nvidia-smi, a folder outside any repository, no torch,
all give None fields. torch is imported only when asked (`torch_details`), so sweep's job wrappers and
`sweep status` read and write manifests without loading it. It imports nothing of sweep, Optuna or
submitit: the built-in trainer and a user's program's job both call it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainer.files import write_atomic
from trainer.paths import RunPaths

FORMAT_VERSION = 1
COMMAND_TIMEOUT_S = 10  # git and nvidia-smi answer in milliseconds; a hung one must not hold a job


@dataclass(frozen=True)
class Attempt:
    """One start of a run: its code, software, hardware and times. None: not known or not there."""

    number: int  # 1 for the run's first start, then 2, 3, ...
    started: str  # ISO 8601, UTC
    ended: str | None  # None while it runs, or when it was killed before it could say
    hostname: str
    program_dir: str  # the folder whose git state is recorded
    git_commit: str | None  # None: not a git repository (or git missing)
    git_dirty: bool | None  # tracked files differ from the commit
    git_diff_sha256: str | None  # sha256 of `git diff HEAD --binary` (binary changes too), when dirty
    git_untracked: int | None  # untracked files that .gitignore does not hide
    python: str
    python_executable: str
    torch: str | None  # torch's version; None when torch is not installed
    cuda: str | None  # the CUDA torch was built with, None on a CPU (no GPU visible)
    cudnn: str | None
    gpus: tuple[str, ...] | None  # the model of each visible GPU; None without one
    gpu_driver: str | None
    slurm_job_id: str | None  # the SLURM_* variables, when the attempt runs in a SLURM job
    slurm_partition: str | None
    slurm_node: str | None
    slurm_restart_count: int | None
    packages_sha256: str  # sha256 of the sorted `name==version` lines of the installed distributions
    packages: int  # how many distributions that is
    git_no_commit: bool = False  # git_commit is None because the folder's repository has no commit yet
    ranks: int | None = None  # the processes of a data-parallel run (WORLD_SIZE), when more than one
    job_nodes: str | None = None  # every host of a SLURM job (SLURM_JOB_NODELIST), where its ranks run

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["gpus"] = list(self.gpus) if self.gpus is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        names = {field.name for field in dataclasses.fields(cls)}
        values = {
            key: value for key, value in data.items() if key in names
        }  # fields of a later format: ignored
        if isinstance(values.get("gpus"), list):
            values["gpus"] = tuple(values["gpus"])
        return cls(**values)

    @property
    def code(self) -> str:
        """The code as one short text: the commit, and the diff's hash when the tree was dirty."""
        if self.git_commit is None:
            return "git, no commit yet" if self.git_no_commit else "not in git"
        return self.git_commit[:12] + (f" + diff {self.git_diff_sha256[:8]}" if self.git_diff_sha256 else "")

    @property
    def gpu_text(self) -> str:
        """The GPUs as one short text: '2 × NVIDIA H100 80GB HBM3', 'no GPU'."""
        if not self.gpus:
            return "no GPU"
        counts: dict[str, int] = {}
        for name in self.gpus:
            counts[name] = counts.get(name, 0) + 1
        return " + ".join(name if n == 1 else f"{n} × {name}" for name, n in counts.items())


def manifest_path(run_dir: Path) -> Path:
    """The run dir's manifest.json."""
    return RunPaths(run_dir).manifest


def read_manifest(run_dir: Path) -> list[Attempt]:
    """The run's attempts, oldest first; [] when there is no manifest or it cannot be read."""
    try:
        data = json.loads(manifest_path(run_dir).read_bytes().decode("utf-8"))
        return [Attempt.from_dict(item) for item in data["attempts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def start_attempt(run_dir: Path, *, program_dir: Path, torch_details: bool = True) -> Attempt:
    """Describe this process's start of the run and append it to run_dir/manifest.json (atomically).

    Args:
        run_dir: the run's folder (it must exist).
        program_dir: the folder of the program's code, whose git state is recorded.
        torch_details: import torch (when installed) for CUDA, cuDNN and the GPUs; False reads torch's
            version from the package metadata only and the GPUs from nvidia-smi.
    """
    attempts = read_manifest(run_dir)
    attempt = describe(program_dir, number=len(attempts) + 1, torch_details=torch_details)
    _write(run_dir, [*attempts, attempt])
    return attempt


def end_attempt(run_dir: Path, attempt: Attempt) -> None:
    """Set `attempt`'s end time in run_dir/manifest.json."""
    ended = dataclasses.replace(attempt, ended=_now())
    attempts = read_manifest(run_dir)
    same = [i for i, a in enumerate(attempts) if (a.number, a.started) == (attempt.number, attempt.started)]
    if same:
        attempts[same[0]] = ended
    else:  # the file was replaced meanwhile (deleted by hand): keep this attempt at least
        attempts.append(ended)
    _write(run_dir, attempts)


@contextmanager
def recorded_attempt(run_dir: Path, *, program_dir: Path, torch_details: bool = True) -> Iterator[Attempt]:
    """`start_attempt` on entry, `end_attempt` on the way out, whether the body returns or raises."""
    attempt = start_attempt(run_dir, program_dir=program_dir, torch_details=torch_details)
    try:
        yield attempt
    finally:
        end_attempt(run_dir, attempt)


def describe(program_dir: Path, *, number: int = 1, torch_details: bool = True) -> Attempt:
    """This process's environment, for the code in `program_dir`."""
    commit, dirty, diff_sha256, untracked = git_state(Path(program_dir))
    torch_version, cuda, cudnn, torch_gpus = _torch_state(torch_details)
    smi_gpus, driver = _nvidia_smi()
    packages = installed_packages()
    restart = os.environ.get("SLURM_RESTART_COUNT")
    in_slurm = "SLURM_JOB_ID" in os.environ
    return Attempt(
        number=number,
        started=_now(),
        ended=None,
        hostname=socket.gethostname(),
        program_dir=str(Path(program_dir).resolve()),
        git_commit=commit,
        git_dirty=dirty,
        git_diff_sha256=diff_sha256,
        git_untracked=untracked,
        python=platform.python_version(),
        python_executable=sys.executable,
        torch=torch_version,
        cuda=cuda,
        cudnn=cudnn,
        gpus=smi_gpus or torch_gpus,
        gpu_driver=driver if (smi_gpus or torch_gpus) else None,
        slurm_job_id=os.environ.get("SLURM_JOB_ID"),
        slurm_partition=os.environ.get("SLURM_JOB_PARTITION") if in_slurm else None,
        slurm_node=(os.environ.get("SLURMD_NODENAME") or os.environ.get("SLURM_NODELIST"))
        if in_slurm
        else None,
        slurm_restart_count=int(restart) if in_slurm and restart and restart.isdigit() else None,
        packages_sha256=hashlib.sha256("\n".join(packages).encode()).hexdigest(),
        packages=len(packages),
        git_no_commit=commit is None and no_commit_yet(Path(program_dir)),
        ranks=_ranks(),
        job_nodes=os.environ.get("SLURM_JOB_NODELIST") if in_slurm else None,
    )


def _ranks() -> int | None:
    """WORLD_SIZE when this run is one of several data-parallel ranks (rank 0 writes the manifest)."""
    size = os.environ.get("WORLD_SIZE", "")
    return int(size) if size.isdigit() and int(size) > 1 else None


def no_commit_yet(folder: Path) -> bool:
    """Whether `folder` is in a git work tree (not a part it ignores) whose repository has no commit."""
    git = ["git", "-C", str(folder)]
    inside = _command([*git, "rev-parse", "--is-inside-work-tree"]) == "true"
    ignored = _output([*git, "check-ignore", "-q", "."]) is not None
    return inside and not ignored and _command([*git, "rev-parse", "--verify", "-q", "HEAD"]) is None


def git_state(folder: Path) -> tuple[str | None, bool | None, str | None, int | None]:
    """(commit, dirty, sha256 of `git diff HEAD` when dirty, untracked files) of the repository holding
    `folder`; all None outside a repository (or in a part it ignores), without git, or before a commit."""
    git = ["git", "-C", str(folder)]
    commit = _command([*git, "rev-parse", "--verify", "HEAD"])
    # a folder git ignores (a package installed into a venv inside some checkout) is not that checkout's code
    if commit is None or _output([*git, "check-ignore", "-q", "."]) is not None:
        return None, None, None, None
    # the diff's bytes as git writes them, whatever the user's diff settings (colour, external tools)
    diff = _output([*git, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff"])
    status = _command([*git, "status", "--porcelain", "--untracked-files=normal"])
    untracked = None if status is None else sum(line.startswith("??") for line in status.splitlines())
    if diff is None:
        return commit, None, None, untracked
    dirty = diff != b""
    return commit, dirty, hashlib.sha256(diff).hexdigest() if dirty else None, untracked


def installed_packages() -> list[str]:
    """Sorted `name==version` of every distribution this interpreter sees (names lower-cased)."""
    found = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.add(f"{name.lower().replace('_', '-')}=={dist.version}")
    return sorted(found)


def _torch_state(import_torch: bool) -> tuple[str | None, str | None, str | None, tuple[str, ...] | None]:
    """(torch version, CUDA, cuDNN, GPU models) from torch; CUDA, cuDNN and GPUs None without a GPU."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None, None, None, None
    if not import_torch and "torch" not in sys.modules:
        return version, None, None, None
    import torch

    if not torch.cuda.is_available():
        return torch.__version__, None, None, None
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    gpus = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return torch.__version__, torch.version.cuda, None if cudnn is None else str(cudnn), gpus or None


def _nvidia_smi() -> tuple[tuple[str, ...] | None, str | None]:
    """(GPU models, driver) of the GPUs this process may use, from nvidia-smi; (None, None) without it.

    CUDA_VISIBLE_DEVICES (indices or UUIDs) narrows the node's GPUs to the job's.
    """
    out = _command(["nvidia-smi", "--query-gpu=index,uuid,name,driver_version", "--format=csv,noheader"])
    if not out:
        return None, None
    rows = [[part.strip() for part in line.split(",")] for line in out.splitlines() if line.count(",") >= 3]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        wanted = {item.strip() for item in visible.split(",") if item.strip()}
        chosen = [row for row in rows if row[0] in wanted or row[1] in wanted]
        rows = chosen if chosen or not wanted else rows  # ids nvidia-smi does not list (MIG): all of them
    if not rows:
        return None, None
    return tuple(row[2] for row in rows), rows[0][3]


def _output(args: list[str]) -> bytes | None:
    """A command's stdout, or None when it is missing, fails or hangs."""
    try:
        done = subprocess.run(
            args, capture_output=True, timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _command(args: list[str]) -> str | None:
    """A command's stdout as stripped text, or None when it is missing, fails or hangs."""
    out = _output(args)
    return None if out is None else out.decode("utf-8", errors="replace").strip()


def _write(run_dir: Path, attempts: list[Attempt]) -> None:
    data = {"format": FORMAT_VERSION, "attempts": [attempt.to_dict() for attempt in attempts]}
    write_atomic(manifest_path(run_dir), json.dumps(data, indent=2) + "\n")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
