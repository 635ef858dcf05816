"""`[study] base = "NAME"`: the winner of study NAME, in the same storage, supplies every value that this
study file does not set itself ([train], or a varied [space]/[[points]] key).

The winner is the confirmed winner when NAME ran `confirm_top` (the best mean over all seeds among the
configurations confirmed), else the configuration with the best mean over its seeds; ties are broken
as everywhere (`sweep.study.winner`: more finished runs, then the lower configuration number). Its
values are those its trials ran (`sweep_configs`). They are found once, at the study's first launch,
and stored with it (`records.BASE`): a later launch, the dry run and the report use the stored values,
so a base that goes on running does not change a study already started.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from sweep.errors import SweepError
from sweep.store import configs, records
from sweep.store import storage as storage_mod
from sweep.store.records import StudyRecord, TrialRecord
from sweep.study import winner as winner_by_mean
from sweep.study.identity import config_values
from sweep.study.program import placeholders
from sweep.study.spec import StudySpec, params_text
from trainer.config import TrainConfig


@dataclass(frozen=True)
class Inherited:
    """The base's winner: where it came from and every value of it."""

    study: str
    config: int  # the winner's configuration number in the base study
    params: dict[str, Any]  # what varied there: names the configuration
    trials: tuple[int, ...]  # the numbers of its COMPLETE trials, the mean's
    metric: str
    value: float  # the mean of the metric over those trials
    confirmed: bool  # the base ran confirm_top: this is its confirmed winner
    values: dict[str, Any]  # all its values

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "trials": list(self.trials)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Inherited | None:
        """The record, or None when `data` is not one (a damaged attribute is treated as absent)."""
        try:
            return cls(**{**data, "trials": tuple(data.get("trials", ()))})
        except TypeError:
            return None

    def source_line(self) -> str:
        """Where the values came from, for the report's header and the dry run."""
        winner = "confirmed winner" if self.confirmed else "winner"
        trials = ", ".join(str(n) for n in self.trials)
        named = params_text(self.params) or f"configuration {self.config}"
        return (
            f"Values from study `{self.study}`'s {winner}: {named} (configuration {self.config}; "
            f"trial{'s' if len(self.trials) != 1 else ''} {trials}; {self.metric} {self.value:.4f}, "
            f"the mean of {len(self.trials)})."
        )


def resolve(spec: StudySpec, storage: RDBStorage, url: str) -> tuple[StudySpec, Inherited | None]:
    """The study with its base's values, and them: as stored with the study, else found now (nothing is
    written here). A study without a base comes back as it is.

    Raises:
        SweepError: The base is not in the storage, has no finished trial, or its winner lacks a value
            this study needs (one line).
    """
    if spec.base is None:
        return spec, None
    inherited = stored(spec, storage)
    if inherited is None:
        inherited = winner(spec, storage, url)
    return apply(spec, inherited), inherited


def stored(spec: StudySpec, storage: RDBStorage) -> Inherited | None:
    """What the study's first launch stored of its base; None before (or without a stored study)."""
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        return None
    return of(study)


def of(study: optuna.Study) -> Inherited | None:
    """The base's values stored with `study`, if any."""
    data = StudyRecord.of(study).base
    return Inherited.from_dict(data) if data is not None else None


def winner(spec: StudySpec, storage: RDBStorage, url: str) -> Inherited:
    """The winner of `spec.base` in `storage` now."""
    where = f"{spec.source}: [study] base '{spec.base}'"
    try:
        base = optuna.load_study(study_name=str(spec.base), storage=storage)
    except KeyError:
        raise SweepError(
            f"{where}: no study of that name in storage '{url}'; launch it first, or fix the name"
        ) from None
    trials = base.get_trials(deepcopy=False)
    done = [t for t in trials if _counts(t)]
    if not done:
        raise SweepError(f"{where}: that study has no finished trial yet; launch it to the end first")
    confirmed = {TrialRecord.of(t).config for t in done if TrialRecord.of(t).confirm}
    by_config: dict[int, list[FrozenTrial]] = {}
    for trial in done:
        config = TrialRecord.of(trial).config
        if config is not None and (not confirmed or config in confirmed):
            by_config.setdefault(config, []).append(trial)
    values = {config: [t.value for t in chosen] for config, chosen in by_config.items()}
    best = winner_by_mean.best(values, base.direction.name.lower())
    if best is None:
        raise SweepError(f"{where}: that study has no finished trial yet; launch it to the end first")
    chosen = by_config[best.config]
    return Inherited(
        study=base.study_name,
        config=best.config,
        params=dict(chosen[0].params),
        trials=tuple(t.number for t in chosen),
        metric=StudyRecord.of(base).metric or "value",
        value=best.value,
        confirmed=bool(confirmed),
        values=_values(base, storage, best.config, chosen[0], program=spec.program is not None),
    )


def apply(spec: StudySpec, inherited: Inherited) -> StudySpec:
    """The study with every value it does not set itself taken from `inherited`.

    Raises:
        SweepError: The winner lacks a value the study's program needs, or has values the built-in
            trainer does not know (its base ran a program).
    """
    varied = set(spec.space) | {key for point in spec.points for key in point}
    taken = {k: v for k, v in inherited.values.items() if k not in varied and k not in spec.train}
    train = {**taken, **spec.train}
    where = f"{spec.source}: [study] base '{spec.base}'"
    if spec.program is not None:
        missing = [
            name for name in placeholders(spec.program.command) if name not in train and name not in varied
        ]
        if missing:
            raise SweepError(
                f"{where}: its winner has no value for {', '.join(missing)}, which [program] command uses; "
                "set it in [train]"
            )
    else:
        unknown = sorted(set(taken) - {field.name for field in dataclasses.fields(TrainConfig)})
        if unknown:
            raise SweepError(
                f"{where}: its winner has values the built-in trainer does not know ({', '.join(unknown)}); "
                "a study with a [program] base needs a [program] too"
            )
    return dataclasses.replace(spec, train=MappingProxyType(train))


def applied(spec: StudySpec | None, study: optuna.Study) -> StudySpec | None:
    """The study file `spec` with the base values stored with `study` (what its trials ran), for the
    commands that read a study; as it is without a base, or before its first launch."""
    inherited = of(study)
    if spec is None or spec.base is None or inherited is None:
        return spec
    try:
        return apply(spec, inherited)
    except SweepError:  # the file changed since: its own values are what the reader can show
        return spec


def write(study: optuna.Study, inherited: Inherited | None) -> None:
    """Store the inherited values with the study (the first launch's; later ones keep them)."""
    if inherited is not None:
        records.write_base(study, inherited.to_dict())


def inherited_line(spec: StudySpec, inherited: Inherited) -> str:
    """The dry run's line: where the values come from and those the study file `spec` (as parsed, before
    `apply`) takes from it."""
    varied = set(spec.space) | {key for point in spec.points for key in point}
    own = {k: v for k, v in inherited.values.items() if k not in varied and k not in spec.train}
    return f"{inherited.source_line()} Inherited: {params_text(dict(sorted(own.items())))}"


def with_base(spec: StudySpec, url: str) -> tuple[StudySpec, Inherited | None]:
    """`resolve` on the storage at `url`, opened read only: a study with a base needs it there already."""
    if spec.base is None:
        return spec, None
    try:
        storage = storage_mod.open_storage(url, create=False, check_schema=False)
    except SweepError as err:
        raise SweepError(f"{spec.source}: [study] base '{spec.base}': {err}") from None
    try:
        with storage_mod.storage_errors(url):
            return resolve(spec, storage, storage_mod.shown(url))
    finally:
        storage.engine.dispose()


def _counts(trial: FrozenTrial) -> bool:
    value = trial.value
    return trial.state == TrialState.COMPLETE and value is not None and math.isfinite(value)


def _values(
    base: optuna.Study, storage: RDBStorage, config: int, trial: FrozenTrial, *, program: bool
) -> dict[str, Any]:
    """The winner's values as stored in `sweep_configs`; for a base stored before it, its plan's fixed
    values and the trial's params."""
    for row in configs.read(storage, storage.get_study_id_from_name(base.study_name)):
        if row.config == config:
            return dict(json.loads(row.values))
    plan = StudyRecord.of(base).plan or {}
    train = plan.get("train") if isinstance(plan.get("train"), dict) else {}
    return config_values(train or {}, trial.params, program=program)
