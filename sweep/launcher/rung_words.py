"""The asynchronous pruners' rungs (`successive_halving`, `hyperband`, `median`): the epochs at which
the pruner decides whether a trial goes on, told to its program as $SWEEP_RUNG_EPOCHS, and the launcher's
word there (`trainer.rung_word`). After logging a rung epoch the program waits; the launcher reads the
line, reports it, asks the pruner, and writes the word at once: go on, or stop (pruned, its job stopped
as well). So no epoch is trained past a rung while the launcher decides.

The rungs: `successive_halving` and `hyperband` decide at warmup x 3^k epochs (at least 1; Hyperband's
brackets each use some of them, and a trial of another bracket is told go at once), below the trial's
`epochs`; `median` at every epoch from the warm-up on (`pruner_warmup_epochs`, at least 1) to the one
before the last. A trial whose epochs the study does not say (a program's) is told the rungs below
UNKNOWN_LAST, or every epoch from the warm-up on. A `debug` job runs inside the launcher, which could
never answer it: it is told none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from sweep.launcher.rungs import rung_epochs, told_job
from sweep.launcher.watched import Watched
from sweep.study.spec import StudySpec
from trainer.files import write_atomic
from trainer.metrics import Epoch
from trainer.paths import RunPaths
from trainer.rung_word import RungEpochs

ASYNCHRONOUS = ("successive_halving", "hyperband", "median")
UNKNOWN_LAST = 100_000  # the rungs told to a trial whose epochs are unknown: those below this epoch
RUNG_READ_S = 0.1  # the loop's longest sleep while a trial's next epoch is a rung (its program will wait)


def told_rungs(spec: StudySpec, values: dict[str, Any], executor: str) -> RungEpochs | None:
    """The rung epochs of a trial of `values` run by `executor`; None: it waits at no epoch."""
    if executor == "debug" or spec.pruner not in ASYNCHRONOUS:
        return None
    epochs = values.get("epochs")
    last = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else None
    first = max(1, spec.pruner_warmup_epochs or 0)
    if spec.pruner == "median":
        if last is None:
            return RungEpochs(((first, None),))  # every epoch from the warm-up on
        return RungEpochs(((first, last - 1),)) if first < last else None
    rungs = rung_epochs(first, last or UNKNOWN_LAST)
    return RungEpochs(tuple((rung, rung) for rung in rungs)) if rungs else None


def with_rungs(job: Any, rungs: RungEpochs | None) -> Any:
    """The job function, told its rung epochs (None: the job as it is). TrainJob and ProgramJob pass
    them on as $SWEEP_RUNG_EPOCHS; a job function of another kind waits nowhere."""
    return told_job(job, rung_epochs=None if rungs is None else str(rungs))  # the variable's text


def answer(item: Watched, history: list[Epoch], done: bool) -> None:
    """Go on: the word for the rung epoch the trial's job logged last, once reported and not pruned (its
    program waits for it). Nothing for a job that ended, nor for an epoch answered already."""
    if item.rungs is None or done or not history:
        return
    epoch = int(history[-1]["epoch"])
    if item.answered < epoch <= item.reported:
        say(item, epoch, go=True)


def say(item: Watched, epoch: int, *, go: bool) -> None:
    """Write the word on rung epoch `epoch` to the trial's run dir (atomically), when it is a rung: go
    on, or stop. A word that cannot be written is left out: the program goes on after its wait."""
    if item.rungs is None or epoch not in item.rungs:
        return
    item.answered = max(item.answered, epoch)
    with contextlib.suppress(OSError):  # the run dir gone, a full disk: the program's wait ends it
        write_atomic(RunPaths(item.run_dir).rung_word(epoch, go=go), "go\n" if go else "stop\n")


def read_pause(items: Iterable[Watched], read_every_s: float) -> float:
    """The loop's longest sleep: `read_every_s`, or RUNG_READ_S while a trial's next epoch is a rung,
    so that its program, waiting there, is read and answered within a fraction of a second."""
    due = any(item.rungs is not None and item.reported + 1 in item.rungs for item in items)
    return min(read_every_s, RUNG_READ_S) if due else read_every_s
