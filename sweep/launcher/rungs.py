"""[study] pruner = "synchronous_halving": trials pause at each rung and only the best third go on.

Rungs are at `pruner_warmup_epochs` x 3^k epochs (at least 1), below a trial's `epochs`. A trial's job
runs one segment: to the next rung (its program is told `SWEEP_STOP_AFTER_EPOCH`; one that ignores it is
stopped once it logged the rung's epoch), then the trial waits there, paused. When every trial of the
search has reached a rung (paused there, or ended), the best third of the configurations by their mean
value at that epoch (`sweep.study.winner`, one tie-break) go on from their checkpoints to the next rung,
the rest end PRUNED with their rung's value. The last segment runs to the trial's own `epochs`.

All of it is stored with the trial (`records.RUNG`: the epoch its current or next segment stops at;
`records.PAUSED`: the epoch it waits at, 0 while a job runs), never kept in memory alone: a launcher
that starts again finds which trials wait, which were promoted and what is left. A decision is a pure
function of the stored values, so one repeated after a restart is the same decision.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep._compat import trial_of
from sweep.errors import Printer, StudyStopped
from sweep.launcher.watched import Watched
from sweep.store import records
from sweep.store.records import TrialRecord
from sweep.study.plan import search_missing
from sweep.study.spec import StudySpec
from sweep.study.winner import ranked

REDUCTION = 3  # a rung keeps the best third
STOP_GRACE_S = 10.0  # a job that logged its rung's epoch ends on its own within this, else it is stopped


def rung_epochs(warmup: int | None, epochs: int) -> list[int]:
    """The epochs a trial of `epochs` pauses at: warmup x 3^k (warmup at least 1), below `epochs`."""
    rung, out = max(1, warmup or 0), []
    while rung < epochs:
        out.append(rung)
        rung *= REDUCTION
    return out


def next_stop(warmup: int | None, epochs: int, after: int) -> int:
    """Where the segment after epoch `after` stops: the next rung, else the trial's last epoch."""
    return next((rung for rung in rung_epochs(warmup, epochs) if rung > after), epochs)


def told_job(job: Any, **fields: Any) -> Any:
    """The job function with `fields` set on a copy: those given (not None) that it has. TrainJob and
    ProgramJob pass them on to the run as environment variables; a job of another kind is left as it is."""
    given = {name: value for name, value in fields.items() if value is not None and hasattr(job, name)}
    if not given:
        return job
    told = copy.copy(job)
    for name, value in given.items():
        setattr(told, name, value)
    return told


def with_stop(job: Any, stop: int | None) -> Any:
    """The job function, told to stop after epoch `stop` (None: the job as it is; its run goes to its
    end). TrainJob and ProgramJob pass it on as SWEEP_STOP_AFTER_EPOCH."""
    return told_job(job, stop_after_epoch=stop)


@dataclass(frozen=True)
class Decision:
    """What a closed rung decided: the trials that go on, and those that end there."""

    rung: int
    promoted: tuple[int, ...]
    pruned: tuple[int, ...]


def waiting_at(trial: FrozenTrial) -> int | None:
    """The rung epoch a RUNNING search trial waits at, undecided; None when it does not wait."""
    record = TrialRecord.of(trial)
    if trial.state != TrialState.RUNNING or not record.paused or record.rung != record.paused:
        return None
    return record.paused


def closable(trials: Sequence[FrozenTrial], rung: int, search_left: bool) -> bool:
    """Whether every trial of the search has reached epoch `rung` (paused there or further, or ended):
    none is left to start, and no running job is still on its way to a rung at or below it."""
    if search_left:
        return False
    for trial in trials:
        record = TrialRecord.of(trial)
        if trial.state != TrialState.RUNNING or record.confirm or record.config is None:
            continue
        if not record.paused and (record.rung is None or record.rung <= rung):
            return False
    return True


def decide(trials: Sequence[FrozenTrial], rung: int, direction: str) -> Decision:
    """The best third (at least one) of the configurations waiting at `rung`, by their mean value at that
    epoch over their seeds; their trials go on, the others' end. A trial without a value there ends."""
    waiting = [trial for trial in trials if waiting_at(trial) == rung]
    values: dict[int, list[float | None]] = {}
    for trial in waiting:
        config = TrialRecord.of(trial).config
        assert config is not None  # a search trial
        values.setdefault(config, []).append(trial.intermediate_values.get(rung))
    order = ranked(values, direction)
    kept = {mean.config for mean in order[: max(1, math.ceil(len(order) / REDUCTION))]}
    promoted = tuple(t.number for t in waiting if TrialRecord.of(t).config in kept)
    pruned = tuple(t.number for t in waiting if TrialRecord.of(t).config not in kept)
    return Decision(rung, promoted, pruned)


def raw_epochs(path: Path) -> list[int]:
    """The `epoch` of each line of a metrics file, in file order, repeats kept."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    epochs = []
    for line in text.splitlines():
        try:
            epochs.append(int(json.loads(line)["epoch"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line still being written, or not an epoch's
    return epochs


class Rungs:
    """A launcher's side of synchronous halving: the segment each job runs, the trials it paused, and the
    rungs it closes."""

    def __init__(self, spec: StudySpec, study: optuna.Study, out: Printer) -> None:
        self.spec = spec
        self.study = study
        self.out = out
        self.paused: dict[int, Watched] = {}  # trials this launcher paused, by number
        self.ready: list[Watched] = []  # promoted: to be submitted to their next rung
        self.changed = True  # a trial paused or ended since the last look at the rungs
        self.resumed: dict[int, int] = {}  # trials resumed from a rung: the epoch, until their next line

    def stop(self, trial: optuna.Trial, epochs: int | None) -> int | None:
        """The epoch the trial's next job stops after (stored with it); None: it runs to its end."""
        record = TrialRecord.of(trial)
        if epochs is None or record.confirm:  # a confirmation trial runs whole, as does a program's
            return None  # whose epochs are unknown
        if record.rung is None:
            records.write(trial, rung=next_stop(self.spec.pruner_warmup_epochs, epochs, 0))
            record = TrialRecord.of(trial)
        if record.paused:
            records.write(trial, paused=0)
        assert record.rung is not None
        return record.rung if record.rung < epochs else None

    def reached(self, item: Watched, done: bool) -> bool:
        """Pause the trial when its job logged its segment's last epoch: at once when its job ended,
        else after STOP_GRACE_S (a program that ignores SWEEP_STOP_AFTER_EPOCH is stopped)."""
        self.check_resumed(item)
        if item.stop is None or item.reported < item.stop:
            return False
        if not done:
            if item.rung_seen is None:
                item.rung_seen = time.monotonic()
            if time.monotonic() - item.rung_seen < STOP_GRACE_S:
                return False
            item.job.stop_soon()
        records.write(item.trial, paused=item.stop)
        self.paused[item.trial.number] = item
        self.changed = True
        self.out(f"trial {item.trial.number} paused at epoch {item.of_epochs(item.stop)}")
        return True

    def adopt(self, item: Watched) -> bool:
        """A trial taken over while it waited at a rung (or was promoted from one): kept, not re-attached.
        False for one whose job runs (watched, its segment's stop epoch known)."""
        record = TrialRecord.of(item.trial)
        if not record.paused:
            epochs = item.epochs
            if record.rung is not None and epochs is not None and record.rung < epochs:
                item.stop = record.rung
            return False
        item.reported = record.paused
        if record.rung == record.paused:
            self.paused[item.trial.number] = item
        else:
            self.ready.append(item)
        self.changed = True
        return True

    def numbers(self) -> set[int]:
        """The trials this launcher holds with no job: paused, or promoted and not submitted yet."""
        return set(self.paused) | {item.trial.number for item in self.ready}

    def next_ready(self) -> Watched | None:
        """A promoted trial to submit now, its rung epoch kept to check that its program resumes."""
        if not self.ready:
            return None
        item = self.ready.pop(0)
        self.resumed[item.trial.number] = item.reported
        return item

    def check_resumed(self, item: Watched) -> None:
        """Stop the launch (StudyStopped) when a trial resumed from a rung logs an epoch up to its rung
        again: its program starts over instead of resuming from its checkpoint, so every rung would
        retrain it. Read from the metrics file's raw lines (`read_epochs` keeps one line an epoch)."""
        paused = self.resumed.get(item.trial.number)
        if paused is None:
            return
        epochs = raw_epochs(item.run_dir / "metrics.jsonl")
        if len(epochs) < paused:  # a program whose `log_epoch` rewrote the file from epoch 1
            again = epochs[-1] if epochs else 1
        elif len(epochs) > paused:
            del self.resumed[item.trial.number]
            again = epochs[paused]
            if again > paused:
                return
        else:
            return
        raise StudyStopped(
            f"{self.spec.name}: trial {item.trial.number} was resumed after epoch {paused} but logged "
            f"epoch {again} again: its program starts over instead of resuming. Synchronous halving "
            "needs a program that saves a checkpoint in SWEEP_RUN_DIR and continues from it "
            f'(docs/guide/own-program.md), or use pruner = "successive_halving" in {self.spec.source}; '
            "the running trials were stopped"
        )

    def close(self, tell: Callable[..., bool]) -> bool:
        """Decide the lowest rung every trial of the search has reached: promote, or end, its trials.
        True when trials of this launcher were promoted (to submit now)."""
        if not self.changed or not self.paused:
            return False
        self.changed = False
        trials = self.study.get_trials(deepcopy=False)
        self.follow(trials)
        waits = sorted({rung for trial in trials if (rung := waiting_at(trial)) is not None})
        if not waits or not closable(trials, waits[0], bool(search_missing(self.spec, trials))):
            return bool(self.ready)
        decision = decide(trials, waits[0], self.spec.direction)
        by_number = {trial.number: trial for trial in trials}
        for number in decision.promoted:
            frozen = by_number[number]
            values = self.spec.trial_values(frozen.params, repeat=TrialRecord.of(frozen).repeat)
            epochs = values.get("epochs")  # known: only a trial whose epochs are known pauses
            last = epochs if isinstance(epochs, int) else decision.rung + 1
            stop = next_stop(self.spec.pruner_warmup_epochs, last, decision.rung)
            # the launcher's own Trial object: Optuna's Trial caches what it wrote itself
            held = self.paused.get(number)
            records.write(held.trial if held else trial_of(self.study, frozen), rung=stop)
        for number in decision.pruned:
            if tell(trial_of(self.study, by_number[number]), state=TrialState.PRUNED):
                self.out(f"trial {number} pruned at rung epoch {decision.rung}: not in the best third")
            self.paused.pop(number, None)
        for number in decision.promoted:
            item = self.paused.pop(number, None)
            if item is not None:
                self.ready.append(item)
        kept = len(decision.promoted)
        self.out(
            f"rung epoch {decision.rung}: {kept} of {kept + len(decision.pruned)} trials go on, "
            f"the rest pruned"
        )
        self.changed = True  # the next rung may be closable at once (nothing promoted to it still runs)
        return bool(self.ready)

    def follow(self, trials: Sequence[FrozenTrial]) -> None:
        """This launcher's paused trials that another launcher sharing the study promoted or ended."""
        for trial in trials:
            item = self.paused.get(trial.number)
            if item is None:
                continue
            record = TrialRecord.of(trial)
            if trial.state != TrialState.RUNNING:
                del self.paused[trial.number]
            elif record.rung is not None and record.rung > record.paused:
                self.ready.append(self.paused.pop(trial.number))
