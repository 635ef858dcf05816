"""Which configuration number is which set of values, for each study: sweep's table `sweep_configs`.

Trials, claims and the report know a configuration by its number (`config`); this table gives each
number its values once and for all (`sweep.study.identity`: the key is their hash), so a study file
that grows, shrinks or changes a fixed value keeps every stored trial's meaning: a configuration
whose values are stored keeps its number and its trials; new values get the next free number.

A number is given by an INSERT, whose primary key (study, config) and unique (study, key) let two
launchers that register at once agree: the loser of either race reads the winner's row.

A study stored before this table existed has trials numbered by their position in the grid of the
file they were launched with: they are matched once, by their stored values (the plan stored with the
study, or the file's [train], and each trial's params), and their numbers kept (`derived`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from sweep._compat import rdb_storage, study_id
from sweep.errors import SweepError
from sweep.store.claims import create_tables
from sweep.store.records import StudyRecord, TrialRecord
from sweep.store.tables import CLAIMS, CONFIGS
from sweep.study.identity import config_values, keyed, planned_configs, values_text
from sweep.study.parse import parse_study
from sweep.study.spec import StudySpec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class StoredConfig:
    """One configuration of a study: its number, its key and its values (canonical JSON)."""

    config: int
    key: str
    values: str


@dataclass(frozen=True)
class Registered:
    """What a launch found: the number of every configuration (the file's ones included), and how the
    study file differs from what was stored before it."""

    ids: dict[str, int]  # key -> config
    new: int  # configurations of the file never stored before
    gone: int  # stored configurations with a finished trial that the file no longer has

    def change_line(self, name: str) -> str | None:
        """The one line a launch and a dry run say before anything runs; None when nothing changed."""
        if not self.new and not self.gone:
            return None
        new = f"{self.new} new configuration{'s' if self.new != 1 else ''}"
        gone = f"{self.gone} finished one{'s' if self.gone != 1 else ''} no longer in the study file"
        return f"{name}: {new}, {gone}"


def read(storage: RDBStorage, study: int) -> list[StoredConfig]:
    """The stored configurations of the study (none when the table is not there yet), by number."""
    if not sa.inspect(storage.engine).has_table(CONFIGS.name):
        return []
    query = sa.select(CONFIGS).where(CONFIGS.c.study_id == study).order_by(CONFIGS.c.config)
    with storage.engine.connect() as conn:
        return [StoredConfig(row.config, row.key, row.config_values) for row in conn.execute(query)]


def known(study: optuna.Study, spec: StudySpec, trials: Sequence[FrozenTrial]) -> list[StoredConfig]:
    """The study's configurations as stored; for a study stored before the table, as its trials say."""
    return read(rdb_storage(study), study_id(study)) or derived(study, spec, trials)


def derived(study: optuna.Study, spec: StudySpec, trials: Sequence[FrozenTrial]) -> list[StoredConfig]:
    """The configurations of a study numbered by position (stored before `sweep_configs`), by their
    values: those the plan stored with it planned, in order, and those its trials ran (the fixed values
    of that plan, else the file's, with each one's params). A sampled configuration (tpe/random) is not
    the file's: it keeps its number and no key."""
    by_trials = {row.config: row for row in _from_trials(study, spec, trials)}
    planned = _from_plan(study, spec)
    if any(by_trials.get(row.config, row).values != row.values for row in planned):
        planned = []  # the trials ran another plan than the one stored: they alone are the truth
    rows = sorted({**by_trials, **{row.config: row for row in planned}}.values(), key=lambda row: row.config)
    keys = keyed([row.values for row in rows])  # equal values numbered over all of them, in order
    return [StoredConfig(row.config, key, row.values) for row, key in zip(rows, keys, strict=True)]


def _from_plan(study: optuna.Study, spec: StudySpec) -> list[StoredConfig]:
    """The configurations the stored plan planned, by position; none without one (or a broken one)."""
    plan = StudyRecord.of(study).plan
    if plan is None or plan.get("sampler") != "grid":
        return []
    data: dict[str, object] = {
        "study": {"name": spec.name, "sampler": "grid", "n_trials": spec.n_trials},
        **{key: plan.get(key) or {} for key in ("train", "space")},
        "points": plan.get("points") or [],
        **({"program": spec.program.to_dict()} if spec.program is not None else {}),
    }
    if data["space"] or data["points"]:
        data["study"] = {"name": spec.name, "sampler": "grid"}  # every configuration of the old file
    try:
        old = parse_study(data, source="the stored plan")
    except SweepError:
        return []
    return [StoredConfig(n, config.key, config.values) for n, config in enumerate(planned_configs(old))]


def _from_trials(study: optuna.Study, spec: StudySpec, trials: Sequence[FrozenTrial]) -> list[StoredConfig]:
    plan = StudyRecord.of(study).plan
    train = plan["train"] if plan is not None and isinstance(plan.get("train"), dict) else dict(spec.train)
    planned = len(spec.planned_trials()) if spec.sampler != "grid" else None
    params: dict[int, dict[str, object]] = {}
    for trial in sorted(trials, key=lambda t: TrialRecord.of(t).repeat):  # a first seed's params first
        record = TrialRecord.of(trial)
        if record.config is not None and (planned is None or record.config < planned):
            params.setdefault(record.config, dict(trial.params))
    numbers = sorted(params)
    program = spec.program is not None
    texts = [values_text(config_values(train, params[n], program=program)) for n in numbers]
    return [StoredConfig(n, key, text) for n, key, text in zip(numbers, keyed(texts), texts, strict=True)]


def file_ids(study: optuna.Study | None, spec: StudySpec) -> dict[str, int]:
    """The number of each configuration of the file (and each stored one), without writing anything: a
    configuration not stored yet gets the number a launch would give it. No study: their positions."""
    trials = study.get_trials(deepcopy=False) if study is not None else []
    stored = known(study, spec, trials) if study is not None else []
    ids = {row.key: row.config for row in stored}
    free = _floor(ids.values(), trials)
    for config in planned_configs(spec):
        if config.key not in ids:
            ids[config.key], free = free, free + 1
    return ids


def register(study: optuna.Study, spec: StudySpec) -> Registered:
    """Store the number of every configuration of the file (a launch's first step with the study), after
    matching the trials of a study stored before the table by their values; return every number."""
    storage, sid = rdb_storage(study), study_id(study)
    create_tables(storage)
    trials = study.get_trials(deepcopy=False)
    stored = read(storage, sid)
    judged = _judged(study, stored)
    if not stored and trials:
        _insert(storage, sid, *derived(study, spec, trials))  # the same rows as any other launcher's
        stored = read(storage, sid)
    before = {row.key for row in stored}
    missing = [config for config in planned_configs(spec) if config.key not in before]
    free = _floor([*(row.config for row in stored), *_top_claim(storage, sid)], trials)
    rows = [StoredConfig(free + n, config.key, config.values) for n, config in enumerate(missing)]
    if rows and not _insert(storage, sid, *rows):  # one transaction; another launcher was quicker:
        for config in missing:  # one by one, each taking the next free number
            _register_one(storage, sid, config.key, config.values, trials)
    ids = {row.key: row.config for row in read(storage, sid)}
    return _change(ids, stored, spec, trials) if judged else Registered(ids, 0, 0)


def preview(study: optuna.Study | None, spec: StudySpec) -> Registered:
    """What `register` would find, written nowhere (the dry run's)."""
    if study is None:
        return _change(file_ids(None, spec), [], spec, [])
    trials = study.get_trials(deepcopy=False)
    ids = file_ids(study, spec)
    if not _judged(study, read(rdb_storage(study), study_id(study))):
        return Registered(ids, 0, 0)
    return _change(ids, known(study, spec, trials), spec, trials)


def _judged(study: optuna.Study, stored: Sequence[StoredConfig]) -> bool:
    """Whether what the study ran before is known: its configurations, or at least the plan it stored
    (a first launch, or one of a study whose launcher stored no plan, changes nothing)."""
    return bool(stored) or StudyRecord.of(study).plan is not None


def _change(
    ids: dict[str, int], stored: Sequence[StoredConfig], spec: StudySpec, trials: Sequence[FrozenTrial]
) -> Registered:
    wanted = {config.key for config in planned_configs(spec)}
    before = {row.key for row in stored}
    finished = {TrialRecord.of(t).config for t in trials if t.state in FINISHED}
    gone = sum(row.key not in wanted and row.config in finished for row in stored)
    return Registered(ids=ids, new=len(wanted - before), gone=gone)


def _register_one(
    storage: RDBStorage, sid: int, key: str, values: str, trials: Sequence[FrozenTrial]
) -> None:
    """Give `key` the next free number; another launcher registering at once wins either race."""
    for _ in range(100):
        stored = read(storage, sid)
        if any(row.key == key for row in stored):
            return
        numbers = [row.config for row in stored] + _top_claim(storage, sid)
        if _insert(storage, sid, StoredConfig(_floor(numbers, trials), key, values)):
            return
    raise RuntimeError(f"could not register configuration {key} of study {sid}")


def _top_claim(storage: RDBStorage, sid: int) -> list[int]:
    """The highest number a claim of the study names (a claim may name one no trial has yet); [] if none."""
    if not sa.inspect(storage.engine).has_table(CLAIMS.name):
        return []
    with storage.engine.connect() as conn:
        top = conn.execute(sa.select(sa.func.max(CLAIMS.c.config)).where(CLAIMS.c.study_id == sid)).scalar()
    return [] if top is None else [int(top)]


def _insert(storage: RDBStorage, sid: int, *rows: StoredConfig) -> bool:
    """Insert the rows in one transaction; False (none inserted) when a number or key of them is stored
    already (another launcher's)."""
    values = [dict(study_id=sid, config=r.config, key=r.key, config_values=r.values) for r in rows]
    if not values:
        return True
    try:
        with storage.engine.begin() as conn:
            # multi-row INSERT statements, not executemany: psycopg runs an executemany in a pipeline,
            # which, aborted by another launcher's row, printed "error ignored terminating Pipeline";
            # 500 rows a statement stay under SQLite's limit of bound parameters
            for start in range(0, len(values), 500):
                conn.execute(sa.insert(CONFIGS).values(values[start : start + 500]))
    except sa.exc.IntegrityError:
        return False
    return True


def _floor(numbers: Iterable[int], trials: Sequence[FrozenTrial]) -> int:
    """The first number above every stored one and every trial's."""
    used = [n for n in (TrialRecord.of(t).config for t in trials) if n is not None]
    return max([-1, *numbers, *used]) + 1
