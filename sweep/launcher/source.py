"""Where a launcher's next trial comes from: a queued one, a planned one, else one the sampler suggests.

Every run (config, repeat) is claimed in the database before its trial is created (`sweep.store.claims`), so
launchers sharing the study never start one twice; a read of the stored trials only skips, cheaply,
the runs another launcher started since this one listed them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep._compat import create_trial, trial_id
from sweep.store import configs, records
from sweep.store.claims import Claims, Holder
from sweep.study.plan import (
    PlannedTrial,
    confirmation_trials,
    distributions,
    missing_trials,
    next_sampled_config,
    taken,
)
from sweep.study.spec import StudySpec

QUEUE_TAKEN = "another launcher took this trial's queued configuration; nothing to run"


class TrialSource:
    """The next trial to run of one study, for one launcher (`next`), after `reconcile` listed them."""

    def __init__(
        self,
        spec: StudySpec,
        study: optuna.Study,
        claims: Claims,
        gone: Callable[[Holder], bool],
        *,
        executor: str,
        launcher: str,
    ) -> None:
        self.spec = spec
        self.study = study
        self.claims = claims
        self.gone = gone  # whether a claim's launcher is gone (its unstarted run may be claimed)
        self.executor = executor
        self.launcher = launcher
        self.distributions = distributions(spec)
        self.ids = configs.file_ids(study, spec)  # each configuration's number: registered by `prepare`
        self.pending: deque[PlannedTrial] = deque()  # planned trials not yet started
        self.waiting = 0  # WAITING trials in the study's queue (left by an older sweep)
        # Confirmation trials are planned from results: listed once the search is done. Until they
        # are, each trial's end (`ended`) makes the next empty-handed `next` look again.
        self.confirm_listed = not spec.confirm_top
        self.relist = False
        self.sampled_out = False  # the sampler's n_trials are all stored: none is left to ask for

    def reconcile(self, trials: Sequence[FrozenTrial]) -> None:
        """List the planned trials that no trial has taken yet, and the queued ones."""
        self.pending = deque(missing_trials(self.spec, trials, self.ids))
        self.waiting = sum(t.state == TrialState.WAITING for t in trials)
        self.confirm_listed = self.confirm_listed or any(item.confirm for item in self.pending)

    def ended(self) -> None:
        """A trial ended: the search may be done now, and its confirmation trials due."""
        self.relist = not self.confirm_listed

    def next(self) -> optuna.Trial | None:
        """The next queued or planned trial, else a new sampled configuration (tpe/random, within n_trials).

        `waiting` counts the WAITING trials this launcher knows of, so that no call needs a query to
        find them. A planned trial is not queued at all: `start_planned` claims its run, then creates it
        running; so does a sampled one.
        """
        if self.waiting:
            self.waiting -= 1
            trial = self.study.ask(self.distributions)
            if records.is_sweep_trial(trial):
                return trial
            # Another launcher sharing the study emptied the queue first: Optuna made a fresh trial.
            self.waiting = 0
            records.write(trial, traceback=QUEUE_TAKEN)
            self.study.tell(trial, state=TrialState.FAIL)
            return self.next()
        if self.pending:
            started = taken(self.study.get_trials(deepcopy=False))
            while self.pending:
                item = self.pending.popleft()
                if (item.config, item.repeat) not in started:
                    planned = self.start_planned(item)
                    if planned is not None:
                        return planned
        sampled = self.sampled()
        if sampled is None and self.relist:
            self.relist = False
            trials = self.study.get_trials(deepcopy=False)
            self.pending.extend(confirmation_trials(self.spec, trials, self.ids))
            self.confirm_listed = bool(self.pending)
            return self.next() if self.pending else None
        return sampled

    def sampled(self) -> optuna.Trial | None:
        """A new configuration from the sampler, its index claimed first; its other seeds run next."""
        # A grid has none, and a search whose n_trials are all stored has none left for good: asked at
        # every poll with a free slot (the study's last trials running), the trials are not read again.
        if self.spec.sampler == "grid" or self.sampled_out:
            return None
        config = next_sampled_config(self.spec, self.study.get_trials(deepcopy=False))
        self.sampled_out = config is None
        while config is not None and not self.claims.claim(config, 0, may_take=self.gone, rerun=False):
            config = config + 1 if config + 1 < self.spec.n_trials else None
        if config is None:
            return None
        trial = self.study.ask(self.distributions)
        records.mark_sampled(trial, config)
        self.claims.bind(config, 0, trial_id(trial))
        repeats = [PlannedTrial(config, repeat, trial.params) for repeat in range(1, self.spec.repeats)]
        self.pending.extendleft(reversed(repeats))
        return trial

    def start_planned(self, item: PlannedTrial) -> optuna.Trial | None:
        """The planned trial `item`, claimed, then created RUNNING with its params and attributes in one
        transaction; None when another launcher holds its run.

        What `enqueue_trial` then `ask` store, in one commit instead of one per step (the enqueue, the
        pop from the queue, which reads all of it, and one per param): the same params, distributions
        and user attributes, the trial started now. A launcher that stops before `submit` leaves it
        RUNNING with no job id, and the next launch submits it (`reconcile`).
        """
        if not self.claims.claim(item.config, item.repeat, may_take=self.gone):
            return None
        template = records.running_template(
            item.params,
            {key: self.distributions[key] for key in item.params},
            self.created_attrs(item.config, item.repeat, confirm=item.confirm),
        )
        trial = create_trial(self.study, template)
        self.claims.bind(item.config, item.repeat, trial_id(trial))
        return trial

    def created_attrs(self, config: int, repeat: int, *, confirm: bool = False) -> dict[str, Any]:
        """The attributes a trial is created with, in its one transaction: `submit` need not write them."""
        return records.trial_attrs(
            config=config, repeat=repeat, executor=self.executor, launcher=self.launcher, confirm=confirm
        )
