"""The report's totals line says where the GPU-hours come from, and never contradicts itself when sacct
does not answer (issue 34: "...from their manifests, every attempt's time from sacct")."""

from __future__ import annotations

from sweep.gpu_hours import StudyHours, TrialHours
from sweep.report.data import Totals
from sweep.report.table import totals_line


def _totals(error: str | None) -> Totals:
    hours = StudyHours((TrialHours(0, "COMPLETE", 0.5, 0.0, 1, "manifest"),), error)
    return Totals(complete=1, pruned=0, failed=0, running=0, waiting=0, epochs=2, epoch_seconds=1800.0,
                  gpus=1, gpus_known=True, hours=hours)  # fmt: skip


def test_the_totals_line_names_sacct_only_when_it_answered() -> None:
    assert totals_line(_totals(None)) == (
        "Trials: 1 complete, 0 pruned, 0 failed, 0 running. Epochs run: 2. GPU-hours: 0.500 used, 0.000 of "
        "them wasted (0%: pruned, failed, lost to requeues), every attempt's time from sacct or the run's "
        "manifest.json (1 GPU per trial; 0.50 h of epochs)."
    )
    down = "sacct does not answer: the SLURM trials' hours come from their manifests"
    assert totals_line(_totals(down)) == (
        "Trials: 1 complete, 0 pruned, 0 failed, 0 running. Epochs run: 2. GPU-hours: 0.500 used, 0.000 of "
        f"them wasted (0%: pruned, failed, lost to requeues); {down} (1 GPU per trial; 0.50 h of epochs)."
    )
