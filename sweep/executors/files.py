"""JobFiles: the files a trial's job keeps in its run dir beside the trainer's (`trainer.paths.RunPaths`):
its lock, submitit's folder (a job's pickles and logs, named by submitit's `JobPaths`), a local job's
controller log, a debug job's output, and a user's program's files. No other module spells these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from submitit.core.utils import JobPaths

SUBMITIT_DIR = "submitit"  # <run_dir>/submitit/<job id>_0_log.out, _submitted.pkl, _result.pkl, ...
LOCK_FILE = "job.lock"  # held (flock) by the job writing the run dir
CONTROLLER_LOG = "controller.log"  # in SUBMITIT_DIR: what a local job's submitit controller prints
DEBUG_LOG = "debug.log"  # a debug job's stdout
PARAMS_FILE = "params.json"  # a program's parameters ($SWEEP_PARAMS)
PROGRAM_FILE = "program.json"  # what `sweep sbatch` leaves for `python -m sweep.executors.program RUN_DIR`
PID_FILE = "program.pid"  # a running program's process group and stop grace
STARTS_FILE = "program.starts"  # how often the program was started
# A trial of several ranks runs the program once per rank: rank 0's files are the names above, another
# rank's have ".rankK" before the suffix (program.rank1.pid, program.0.rank1.err): none writes another's.


def log_paths(folder: Path, job_id: str) -> JobPaths:
    """submitit's files of task 0 of `job_id` in its `folder`: result pickle, stdout, stderr."""
    return JobPaths(folder, job_id, task_id=0)


@dataclass(frozen=True)
class JobFiles:
    """Where a trial's job keeps its files in `run_dir`."""

    run_dir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))

    @property
    def folder(self) -> Path:
        """submitit's folder: every job id's pickles and logs."""
        return self.run_dir / SUBMITIT_DIR

    def job(self, job_id: str) -> JobPaths:
        """submitit's files of one job (its task 0)."""
        return log_paths(self.folder, job_id)

    def submitted(self) -> list[tuple[str, float]]:
        """(job id, when submitted) of every job submitit started here, oldest first."""
        found = [
            (path.name.removesuffix("_submitted.pkl"), path) for path in self.folder.glob("*_submitted.pkl")
        ]
        stamped = [(job_id, path.stat().st_mtime) for job_id, path in found]
        return sorted(stamped, key=lambda item: (item[1], item[0]))

    def sbatch_submissions(self) -> list[str]:
        """The job ids of the sbatch scripts submitit wrote here (before or without a submitted pickle)."""
        return [path.name.split("_")[0] for path in self.folder.glob("*_submission.sh")]

    @property
    def lock(self) -> Path:
        return self.run_dir / LOCK_FILE

    @property
    def controller_log(self) -> Path:
        return self.folder / CONTROLLER_LOG

    @property
    def debug_log(self) -> Path:
        return self.run_dir / DEBUG_LOG

    @property
    def params(self) -> Path:
        return self.run_dir / PARAMS_FILE

    @property
    def program(self) -> Path:
        return self.run_dir / PROGRAM_FILE

    @property
    def program_pid(self) -> Path:
        return self.rank_pid(0)

    def rank_pid(self, rank: int) -> Path:
        """Where rank `rank`'s job keeps its program's process group and stop grace."""
        return self.run_dir / _of_rank(PID_FILE, rank)

    def program_pids(self) -> list[Path]:
        """The program pid files of every rank that started one (rank 0's first)."""
        others = sorted(self.run_dir.glob(_of_rank(PID_FILE, "*")), key=lambda path: path.name)
        return [path for path in (self.program_pid, *others) if path.exists()]

    @property
    def program_starts(self) -> Path:
        return self.rank_starts(0)

    def rank_starts(self, rank: int) -> Path:
        """How often rank `rank` started the program (each start of the job starts every rank)."""
        return self.run_dir / _of_rank(STARTS_FILE, rank)

    def program_output(self, start: int, stream: str, rank: int = 0) -> Path:
        """What rank `rank` of the program's start number `start` wrote to `stream` (out | err)."""
        return self.run_dir / _of_rank(f"program.{start}.{stream}", rank)

    def program_outputs(self, stream: str) -> list[tuple[int, Path]]:
        """(start number, file) of every start of the program that wrote `stream`, first start first:
        rank 0's (the one a trial of one rank has)."""
        named = (path.name.split(".") for path in self.run_dir.glob(f"program.*.{stream}"))
        return sorted(
            (int(parts[1]), self.run_dir / ".".join(parts))
            for parts in named
            if len(parts) == 3 and parts[1].isdigit()
        )


def _of_rank(name: str, rank: int | str) -> str:
    """File `name` of rank `rank`: rank 0's is `name`, another's has ".rankK" before the suffix."""
    if rank == 0:
        return name
    stem, _, suffix = name.rpartition(".")
    return f"{stem}.rank{rank}.{suffix}"
