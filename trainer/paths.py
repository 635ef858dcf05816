"""RunPaths: every file the trainer leaves in a run directory, in one place (a job's own files beside
them: `sweep.executors.files.JobFiles`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    """The on-disk layout of one run (docs/architecture.md, "Files a run leaves")."""

    run_dir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))

    @property
    def config(self) -> Path:
        """The resolved TrainConfig, as JSON."""
        return self.run_dir / "config.json"

    @property
    def metrics(self) -> Path:
        """One JSON object per finished epoch."""
        return self.run_dir / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        """Model, optimizer, scheduler, RNG states and history after the last finished epoch."""
        return self.run_dir / "checkpoint.pt"

    @property
    def best(self) -> Path:
        """The weights of the best validation epoch so far."""
        return self.run_dir / "best.pt"

    @property
    def manifest(self) -> Path:
        """What each start of the run ran on (`trainer.manifest`)."""
        return self.run_dir / "manifest.json"

    @property
    def result(self) -> Path:
        """The TrainResult, written once the last epoch is done."""
        return self.run_dir / "result.json"

    def rung_word(self, epoch: int, *, go: bool) -> Path:
        """The launcher's word on rung epoch `epoch` of an asynchronous pruner (`trainer.rung_word`):
        go on (`rung-E.go`), or stop, the trial pruned (`rung-E.stop`)."""
        return self.run_dir / f"rung-{epoch}.{'go' if go else 'stop'}"
