"""A trial whose job the launcher watches: the trial, its job, what the job got, where it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from sweep.errors import Printer
from sweep.executors import Job, requeues
from sweep.launcher.stall import EpochClock
from sweep.store.records import TrialRecord
from trainer.metrics import Epoch, read_epochs
from trainer.paths import RunPaths
from trainer.rung_word import RungEpochs


@dataclass
class Watched:
    """A trial whose job the launcher watches."""

    trial: optuna.Trial
    job: Job
    values: dict[str, Any]  # what the job got: TrainConfig fields, or a program's parameters
    run_dir: Path
    reported: int = 0  # the last epoch reported to the trial
    waited: bool = False  # its job's wait in a queue was said
    clock: EpochClock = field(default_factory=EpochClock)  # when its epochs came (a stall is said)
    requeues_said: int = 0  # the requeues of its job said so far (`requeue_lines`)
    requeues_size: int = 0  # the size of its requeue record when last read: read again only when it grew
    restarts: int | None = None  # its job's restart count as SLURM last said (a requeue is said as it grows)
    stop: int | None = None  # synchronous halving: the epoch its job stops after (`sweep.launcher.rungs`)
    rung_seen: float | None = None  # when its job logged that epoch (monotonic), while it had not ended
    rungs: RungEpochs | None = None  # an asynchronous pruner's: where its program waits for a word
    answered: int = 0  # the last rung epoch whose word was written (`sweep.launcher.rung_words`)
    # metrics.jsonl as last read, and its (size, mtime) then: a launcher polls 50 trials several times
    # a second, and parses a file again only when it changed
    _epochs: list[Epoch] = field(default_factory=list, init=False, repr=False)
    _stamp: tuple[int, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._metrics = RunPaths(self.run_dir).metrics
        self._requeues = self.run_dir / requeues.FILE

    def history(self) -> list[Epoch]:
        """The run's logged epochs (its metrics.jsonl), parsed again only when the file changed."""
        try:
            stat = self._metrics.stat()
        except OSError:
            return []
        stamp = (stat.st_size, stat.st_mtime_ns)
        if stamp != self._stamp:
            self._epochs, self._stamp = read_epochs(self._metrics), stamp
        return self._epochs

    @property
    def key(self) -> tuple[int, int]:
        """(config, repeat): the run the trial is, as claimed."""
        record = TrialRecord.of(self.trial)
        return (-1 if record.config is None else record.config), record.repeat

    @property
    def epochs(self) -> int | None:
        """The epochs the trial runs, when its values say (a program's may not)."""
        epochs = self.values.get("epochs")
        return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None

    def of_epochs(self, epoch: int) -> str:
        return f"{epoch}/{self.epochs}" if self.epochs is not None else str(epoch)

    def say_waiting(self, out: Printer) -> None:
        """Say once that the trial's job waits in the queue, and why (SLURM's reason); the live view
        shows the line above the trials."""
        why = self.job.waiting()
        if why is not None:
            self.waited = True
            out(f"trial {self.trial.number} job {self.job.job_id} waits in the queue: {why}")

    def requeue_lines(self) -> list[str]:
        """One line for each requeue of its job not said yet: those its job recorded (its run dir's
        record grew), then those SLURM did on its own (`scheduler_requeue_lines`)."""
        return self.recorded_requeue_lines() + self.scheduler_requeue_lines()

    def scheduler_requeue_lines(self) -> list[str]:
        """One line for each requeue SLURM did without the job's own checkpoint (an admin's `scontrol
        requeue`, a node failure, a program killed by the requeue's signal): its restart count grew, and
        the run dir records no requeue of that attempt. The count is the one the launcher's poll asked."""
        count, before = self.job.restarts(), self.restarts
        if count is None:
            return []
        self.restarts = count
        if before is None or count <= before:  # the first count seen (a re-attached job's): a baseline
            return []
        recorded = {(done.job_id, done.restart) for done in requeues.read(self.run_dir)}
        return [
            f"trial {self.trial.number} job {self.job.job_id} requeued by SLURM (restart {restart}), not "
            "by its own checkpoint: an admin's `scontrol requeue` or a node failure; it runs again, "
            "resuming from its checkpoint"
            for restart in range(before + 1, count + 1)
            if (self.job.job_id, restart - 1) not in recorded  # its checkpoint's requeue: said above
        ]

    def recorded_requeue_lines(self) -> list[str]:
        """One line for each requeue its job recorded, not said yet (its run dir's record grew)."""
        try:
            size = self._requeues.stat().st_size
        except OSError:
            return []
        if size == self.requeues_size:
            return []
        self.requeues_size = size
        found, said = requeues.read(self.run_dir), self.requeues_said
        self.requeues_said = len(found)
        return [
            f"trial {self.trial.number} job {done.job_id} requeued ({done.cause}) "
            + (f"after epoch {self.of_epochs(done.epoch)}" if done.epoch else "before its first epoch")
            + f"; requeue {index} of the trial, resuming from its checkpoint"
            for index, done in enumerate(found[said:], start=said + 1)
        ]


def interrupted_line(study: str, running: dict[int, Watched], starting: int | None, executor: str) -> str:
    """The line for a launch stopped by Ctrl-C: the trials it watched (`starting`: the one whose job was
    being started), and what to do next."""
    watched = [f"trial {n} (job {item.job.job_id})" for n, item in sorted(running.items())]
    if starting is not None:
        started = "ran in this process" if executor == "debug" else "was being submitted"
        watched.append(f"trial {starting} (its job {started})")
    if not watched:
        return f"{study}: launch interrupted; no trial was running"
    jobs, count = ", ".join(watched), len(watched)
    return (
        f"{study}: launch interrupted with {count} trial{'s' if count != 1 else ''} running: "
        f"{jobs}. `sweep launch` again re-attaches live jobs and resumes stopped ones from their "
        "checkpoints; `sweep cancel` stops them"
    )
