"""What a study runs, worked out from its StudySpec: the planned trials, the sampler and pruner, the plan
fingerprint stored at the first launch, and the dry run.

Every Optuna trial is one (configuration, repeat): its record's `config` (the index of the
configuration: planned ones first, in file order, then sampled ones) and `repeat` (the seed offset)
say which, so a restart never starts a configuration that is COMPLETE, PRUNED or still running again.
A planned configuration whose trial FAILed is run again by the next launch (the cause may be fixed);
a sampled one is not (it used up its place in n_trials).

Confirmation ([study] confirm_top = K, confirm_repeats = R): once the search is done (every planned and
sampled trial finished), the K configurations with the best mean value over their search seeds are run
again with R further seeds, repeats `repeats` .. `repeats + R - 1`, marked `confirm`. The plan of those
depends on results, so it is worked out from the stored trials (`confirmation_trials`); a configuration
that got a confirmation trial stays chosen, so the choice never moves once made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from sweep._compat import enqueued_params
from sweep.errors import Printer, SweepError, print_line
from sweep.store.records import StudyRecord, TrialRecord
from sweep.study import winner
from sweep.study.identity import planned_configs
from sweep.study.spec import Categorical, Dimension, FloatRange, StudySpec, params_text
from trainer.config import RESUMABLE_CHANGES, TrainConfig

# A trial in one of these states has its (config, repeat); a FAILed one gives it back.
TAKEN_STATES = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)

# A study's configuration numbers by key (`sweep.store.configs`); None: a study never stored, numbered in
# order.
Ids = Mapping[str, int] | None


@dataclass(frozen=True)
class PlannedTrial:
    """One trial the study file fixes: configuration `config` (0-based) run with seed offset `repeat`."""

    config: int
    repeat: int
    params: dict[str, Any]
    confirm: bool = False  # a confirmation trial: a further seed of one of the search's best


def plan(spec: StudySpec, ids: Ids = None) -> list[PlannedTrial]:
    """The planned trials, in launch order: each grid point / [[points]] entry, `repeats` times, each
    numbered by `ids` (its values' number in the study: `sweep.store.configs`), else by its position."""
    if ids is None:
        return [
            PlannedTrial(config=index, repeat=repeat, params=params)
            for index, params in enumerate(spec.planned_trials())
            for repeat in range(spec.repeats)
        ]
    return [
        PlannedTrial(config=ids[config.key], repeat=repeat, params=dict(config.params))
        for config in planned_configs(spec)
        for repeat in range(spec.repeats)
    ]


def file_configs(spec: StudySpec, ids: Ids) -> set[int] | None:
    """The numbers of the configurations the study file has (a grid's; None: every one counts)."""
    if ids is None or spec.sampler != "grid":
        return None
    return {ids[config.key] for config in planned_configs(spec)}


def sampled_configs(spec: StudySpec) -> int:
    """How many configurations the sampler suggests beyond the planned ones (tpe/random only)."""
    if spec.sampler == "grid":
        return 0
    return spec.n_trials - len(spec.planned_trials())


def distributions(spec: StudySpec) -> dict[str, BaseDistribution]:
    """The Optuna distribution of each varied field; for a points-only study, the points' values."""
    if spec.space:
        return {key: _distribution(dim) for key, dim in spec.space.items()}
    choices: dict[str, list[Any]] = {}
    for point in spec.points:
        for key, value in point.items():
            if value not in choices.setdefault(key, []):
                choices[key].append(value)
    return {key: CategoricalDistribution(values) for key, values in choices.items()}


def _distribution(dim: Dimension) -> BaseDistribution:
    if isinstance(dim, Categorical):
        return CategoricalDistribution(dim.choices)
    if isinstance(dim, FloatRange):
        return FloatDistribution(dim.low, dim.high, log=dim.log)
    return IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step or 1)


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """TPE or random for a search; a grid's trials are all planned, so its sampler is never asked."""
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler()
    return optuna.samplers.RandomSampler()


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The study's pruner; unset settings keep Optuna's defaults (median: 5 finished trials first)."""
    warmup = spec.pruner_warmup_epochs or 0
    if spec.pruner == "median":
        startup = 5 if spec.pruner_startup_trials is None else spec.pruner_startup_trials
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if spec.pruner == "hyperband":
        # every epoch count is a resource; a trial always runs `warmup` epochs (at least one). With
        # max_resource "auto" Optuna prunes nothing until a trial has run to its end (with --parallel 8
        # the first eight trials then run in full): the study's epochs are the maximum when known.
        first, epochs = max(1, warmup), study_epochs(spec)
        return optuna.pruners.HyperbandPruner(
            min_resource=first, max_resource="auto" if epochs is None else max(first, epochs)
        )
    if spec.pruner == "successive_halving":
        # asynchronous successive halving: rungs at warmup x 3^k epochs; a trial in the best third of
        # those that reached its rung goes on (no trial waits for others: sweep never pauses a job)
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup), reduction_factor=3)
    # none, and synchronous halving, whose rungs the launcher decides itself (`sweep.launcher.rungs`)
    return optuna.pruners.NopPruner()


def study_epochs(spec: StudySpec) -> int | None:
    """The epochs every trial runs, when the study fixes them: [train] epochs (the built-in trainer's
    default when it sets none); None when `epochs` varies or a program's study does not say."""
    if "epochs" in spec.varied_keys:
        return None
    epochs = spec.train.get("epochs")
    if epochs is None and spec.program is None:
        epochs = TrainConfig().epochs
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else None


def is_sampled(record: TrialRecord, planned: int) -> bool:
    """Whether the trial's configuration was suggested by the sampler, not one of the `planned` the
    study file fixes (`len(spec.planned_trials())`, which builds the grid: count it once)."""
    return record.config is not None and record.config >= planned


def taken(trials: Sequence[FrozenTrial]) -> set[tuple[int | None, int]]:
    """The (config, repeat) of every trial that holds its run: waiting, running or finished well."""
    return {TrialRecord.of(t).key for t in trials if t.state in TAKEN_STATES}


def missing_trials(spec: StudySpec, trials: Sequence[FrozenTrial], ids: Ids = None) -> list[PlannedTrial]:
    """Each planned (config, repeat), and each repeat of a sampled config, that no trial has taken yet;
    once the search is done, the confirmation trials not taken yet.

    A trial WAITING, RUNNING, COMPLETE or PRUNED takes its (config, repeat); a FAILed one does not, so a
    planned configuration that failed is planned again.
    """
    missing = search_missing(spec, trials, ids)
    return missing or confirmation_trials(spec, trials, ids)


def search_missing(spec: StudySpec, trials: Sequence[FrozenTrial], ids: Ids = None) -> list[PlannedTrial]:
    wanted = plan(spec, ids)
    planned = len(spec.planned_trials())
    sampled: dict[int, dict[str, Any]] = {}
    for trial in trials:
        record = TrialRecord.of(trial)
        searched = spec.sampler != "grid" and record.repeat == 0  # a grid's numbers are all the file's
        if record.config is not None and searched and is_sampled(record, planned):
            sampled[record.config] = trial.params
    wanted += [PlannedTrial(c, r, params) for c, params in sampled.items() for r in range(1, spec.repeats)]
    done = taken(trials)
    return [item for item in wanted if (item.config, item.repeat) not in done]


def search_done(spec: StudySpec, trials: Sequence[FrozenTrial], ids: Ids = None) -> bool:
    """Whether every trial of the search has finished: each planned and sampled configuration, each seed."""
    if search_missing(spec, trials, ids):
        return False
    live = (TrialState.RUNNING, TrialState.WAITING)
    if any(t.state in live and not TrialRecord.of(t).confirm for t in trials):
        return False
    return spec.sampler == "grid" or next_sampled_config(spec, trials) is None


def confirmation_trials(
    spec: StudySpec, trials: Sequence[FrozenTrial], ids: Ids = None
) -> list[PlannedTrial]:
    """The confirmation trials not taken yet; none before the search is done or without confirm_top."""
    if not spec.confirm_top or not search_done(spec, trials, ids):
        return []
    done = taken(trials)
    return [
        PlannedTrial(config, repeat, params, confirm=True)
        for config, params in top_configs(spec, trials, ids)
        for repeat in range(spec.repeats, spec.seeds)
        if (config, repeat) not in done
    ]


def top_configs(
    spec: StudySpec, trials: Sequence[FrozenTrial], ids: Ids = None
) -> list[tuple[int, dict[str, Any]]]:
    """The `confirm_top` configurations to confirm, (config, params): those a confirmation trial holds
    already, then the best by the mean value of their COMPLETE search trials (`sweep.study.winner`, ties
    included); only configurations the study file still has."""
    values: dict[int, list[float]] = {}
    params: dict[int, dict[str, Any]] = {}
    chosen: list[int] = []
    in_file = file_configs(spec, ids)
    for trial in trials:
        record = TrialRecord.of(trial)
        if record.config is None or (in_file is not None and record.config not in in_file):
            continue
        params.setdefault(record.config, dict(trial.params))
        if record.confirm and record.config not in chosen:
            chosen.append(record.config)
        elif not record.confirm and trial.state == TrialState.COMPLETE and trial.value is not None:
            values.setdefault(record.config, []).append(trial.value)
    ranked = [mean.config for mean in winner.ranked(values, spec.direction)]
    chosen += [config for config in ranked if config not in chosen]
    return [(config, params[config]) for config in chosen[: spec.confirm_top]]


def next_sampled_config(spec: StudySpec, trials: Sequence[FrozenTrial]) -> int | None:
    """The index of the next configuration to ask the sampler for; None when n_trials are used up."""
    if spec.sampler == "grid":
        return None
    used = [c for c in (TrialRecord.of(t).config for t in trials) if c is not None]
    next_config = max([len(spec.planned_trials()) - 1, *used]) + 1
    return next_config if next_config < spec.n_trials else None


def dry_run(
    spec: StudySpec, *, study: optuna.Study | None = None, out: Printer = print_line, ids: Ids = None
) -> list[PlannedTrial]:
    """Print what `sweep launch` would do next, and return the trials it would submit; writes nothing.

    Args:
        spec: The validated study.
        study: The stored study when it exists: then only what is left is listed (running trials that
            would be re-attached, planned trials not yet complete, pruned or failed for good).
        out: Where the lines go.
        ids: The configurations' numbers (`sweep.store.configs.file_ids`); None: in file order.
    """
    trials = study.get_trials(deepcopy=False) if study is not None else []
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            job = TrialRecord.of(trial).job_id or "none yet"
            out(f"trial {trial.number} running  job {job}  {params_text(trial.params)}: would be re-attached")
    waiting = [t for t in trials if t.state == TrialState.WAITING]  # enqueued: params are the fixed ones
    todo = [_queued(t) for t in waiting] + missing_trials(spec, trials, ids)
    for item in todo:
        out(f"config {item.config} repeat {item.repeat}  {params_text(item.params)}")
    planned = len(spec.planned_trials())
    used = {record.config for record in map(TrialRecord.of, trials) if is_sampled(record, planned)}
    extra = max(0, sampled_configs(spec) - len(used))
    if extra:
        out(f"then {extra} configurations x {spec.repeats} repeats suggested by the {spec.sampler} sampler")
    if spec.confirm_top and not search_done(spec, trials, ids):
        out(
            f"then the {spec.confirm_top} best configurations x {spec.confirm_repeats} further seeds "
            "(confirmation), once the search is done"
        )
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    already = f", {done} already finished" if trials else ""
    out(
        f"{spec.name}: {len(todo)} planned trials, {extra * spec.repeats} sampled to submit{already}; "
        "nothing submitted"
    )
    return todo


def _queued(trial: FrozenTrial) -> PlannedTrial:
    """A WAITING trial (the other seeds of a sampled configuration) as the run it stands for."""
    record = TrialRecord.of(trial)
    config = -1 if record.config is None else record.config
    return PlannedTrial(config=config, repeat=record.repeat, params=enqueued_params(trial))


def plan_fingerprint(spec: StudySpec) -> dict[str, Any]:
    """What the study was launched with, stored with it (the latest launch's for a grid): the sampler,
    [space], [[points]] and the [train] fields that change results.

    A grid's configurations are matched to trials by their values (`sweep.store.configs`), so its file may
    change between launches. A tpe/random sampler learns from every stored trial and numbers its
    configurations in order, so its sampler, [space], [[points]] and those [train] fields must stay.
    n_trials, repeats, the pruner and [resources] may change; so may the [train] fields a resumed run
    may change.
    """
    data = spec.to_dict()
    train = {key: value for key, value in data["train"].items() if key not in RESUMABLE_CHANGES}
    fixed = {"sampler": spec.sampler, "space": data["space"], "points": data["points"], "train": train}
    return dict(json.loads(json.dumps(fixed)))  # as the storage gives it back: lists, not tuples


def check_same_plan(spec: StudySpec, study: optuna.Study, *, url: str) -> None:
    """Raise a SweepError when the stored study was launched with another metric or sampler, or (tpe,
    random) another plan. `url` names the storage in the message (as `store.storage.shown` prints it)."""
    record = StudyRecord.of(study)
    where = f"storage '{url}': study '{spec.name}' was launched"
    if record.metric is not None and record.metric != spec.metric:
        raise SweepError(
            f"{where} with metric {record.metric!r}, the study file now says {spec.metric!r}: its trials' "
            "values are the other metric, so results would mix. Restore metric, or give the changed study "
            "a new [study] name"
        )
    stored = record.plan
    if stored is None:  # not launched yet, or by a sweep that stored no plan: its trials tell
        if spec.sampler != "grid":
            _check_trials_match(spec, study, url=url)
        return
    if stored.get("sampler") != spec.sampler:
        raise SweepError(
            f"{where} with the {stored.get('sampler')} sampler, the study file now says {spec.sampler}: "
            "a sampler plans or learns from every stored trial, so results would mix. Restore sampler, or "
            "give the changed study a new [study] name"
        )
    if spec.sampler == "grid":  # configurations are matched by their values: the file may change
        return
    now = plan_fingerprint(spec)
    changed = [
        f"[train] {key} ({stored['train'].get(key)!r} there, {now['train'].get(key)!r} now)"
        for key in sorted(set(stored["train"]) | set(now["train"]))
        if stored["train"].get(key) != now["train"].get(key)
    ]
    changed += [f"[{key}]" for key in ("space", "points") if stored.get(key) != now[key]]
    if changed:
        raise SweepError(
            f"{where} from a study file with another {', '.join(changed)}; the {spec.sampler} sampler "
            "learns from every stored trial and numbers its configurations in order, so results would "
            "mix. Restore those settings, or give the changed study a new [study] name"
        )


def _check_trials_match(spec: StudySpec, study: optuna.Study, *, url: str) -> None:
    """Raise a SweepError when a stored trial's params or distributions are not the study file's."""
    planned, now = spec.planned_trials(), distributions(spec)
    for trial in study.get_trials(deepcopy=False):
        config = TrialRecord.of(trial).config
        if config is not None and config < len(planned) and trial.params != planned[config]:
            problem = (
                f"trial {trial.number} ran configuration {config} as {params_text(trial.params)}, "
                f"the study file now makes it {params_text(planned[config]) or 'the [train] defaults'}"
            )
        elif any(now.get(key) != dist for key, dist in trial.distributions.items()):
            problem = f"trial {trial.number} searched another [space] ({', '.join(trial.distributions)})"
        else:
            continue
        raise SweepError(
            f"storage '{url}': study '{spec.name}': {problem}; its trials are matched to configurations "
            "by position, so results would mix. Restore the study file, or give the changed study a new "
            "[study] name"
        )
