"""Study files: parse `studies/NAME.toml` into a validated, frozen `StudySpec`.

A study file has five parts (DESIGN.md):

    [study]           name, metric, direction, sampler, pruner, n_trials, repeats,
                      pruner_startup_trials, pruner_warmup_epochs
    [train]           TrainConfig fields fixed for every trial
    [space]           searched TrainConfig fields: a list = categorical choices; a table
                      {low, high, log, step} = a range (integers when low and high are, `step` for those)
    [[points]]        explicit configurations (tables of TrainConfig fields), each enqueued as one trial
    [resources]       executor-neutral requests, with extra SLURM options under [resources.slurm]

Decisions the design leaves open:

* Samplers are grid | tpe | random; there is no separate "points" sampler. A grid study lists its
  configurations either as a [space] (the cartesian product, keys in file order, the last key
  changing fastest) or as [[points]] (exactly those configurations, in file order), never both.
  A points-only study (the seven hand-picked tuning runs) is therefore `sampler = "grid"` with
  [[points]] and no [space]. n_trials defaults to the number of configurations and may cut it short.
* A tpe/random study needs a [space] and n_trials. Its [[points]] are optional warm starts: each must
  set every [space] key, to a value inside the space; they are enqueued first and count toward n_trials.
* Without a [space], every point sets the same keys, so each key is one column of the report.
* A field is either fixed ([train]) or varied ([space] / [[points]]), never both.
* A study with neither [space] nor [[points]] runs [train] alone, n_trials times; n_trials is required.
* n_trials counts configurations. The launcher runs each with `repeats` seeds (seed, seed + 1, ...;
  see `StudySpec.train_config`), so `seed` may not be varied when repeats > 1.
* metric is one of the per-epoch metrics (val_acc, val_loss, train_acc, train_loss): the pruner needs a
  value every epoch, and the test set must not steer a search. direction defaults to maximize for
  accuracies and minimize for losses; a direction that contradicts the metric is an error.
* Validation builds a TrainConfig for every categorical choice, both ends of every range, every point
  and, for grid studies, every grid configuration, so TrainConfig's own checks run at parse time.
  Combinations a tpe/random sampler may draw are not enumerated.
* Pruner settings: `pruner_warmup_epochs` (default 0) is the epochs a trial always runs before it can be
  pruned (median: n_warmup_steps; hyperband: its min_resource, at least 1); `pruner_startup_trials`
  (median only, default 5 as in Optuna) is how many trials must finish before the median prunes at all.
  A study of 4 trials that wants pruning must therefore lower it. Either key without a pruner is an error.
* [resources.slurm] holds scalar SLURM options without the `slurm_` prefix (qos = "high"); options that
  duplicate a generic [resources] key (partition, time, mem, gres, ...) are errors.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeAlias

from sweep.errors import SweepError
from trainer.config import TrainConfig, field_names, field_types

STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"

SAMPLERS = ("grid", "tpe", "random")
PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("maximize", "minimize")
METRICS = {"val_acc": "maximize", "val_loss": "minimize", "train_acc": "maximize", "train_loss": "minimize"}
SECTIONS = ("study", "train", "space", "points", "resources")
STUDY_KEYS = (
    "name",
    "metric",
    "direction",
    "sampler",
    "pruner",
    "n_trials",
    "repeats",
    "pruner_startup_trials",
    "pruner_warmup_epochs",
)
RANGE_KEYS = ("low", "high", "log", "step")
RESOURCE_KEYS = ("gpus", "cpus", "mem_gb", "timeout_min", "partition", "array_parallelism", "slurm")
# SLURM options that the generic [resources] keys already set: option -> the key to use instead.
SLURM_GENERIC = {
    "partition": "partition",
    "time": "timeout_min",
    "timeout_min": "timeout_min",
    "gres": "gpus",
    "gpus_per_node": "gpus",
    "gpus_per_task": "gpus",
    "cpus_per_task": "cpus",
    "mem": "mem_gb",
    "mem_gb": "mem_gb",
    "array_parallelism": "array_parallelism",
}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SLURM_KEY_RE = re.compile(r"[a-z][a-z0-9_]*")

SlurmValue: TypeAlias = str | int | float | bool


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Categorical:
    """A searched field that takes one of `choices` (TOML: a list)."""

    choices: tuple[Any, ...]

    def to_dict(self) -> list[Any]:
        return list(self.choices)


@dataclass(frozen=True)
class IntRange:
    """A searched integer field in [low, high]; `step` makes it griddable (TOML: {low, high, step})."""

    low: int
    high: int
    step: int | None = None  # None: any integer (step 1) for tpe/random; grid needs it spelled out
    log: bool = False  # sample on a log scale (tpe/random); needs low >= 1 and no step

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out

    def values(self) -> list[int]:
        """Every value of the range, low to high (needs a step)."""
        if self.step is None:
            raise SweepError(f"integer range {self.low}..{self.high} has no step and cannot be listed")
        return list(range(self.low, self.high + 1, self.step))


@dataclass(frozen=True)
class FloatRange:
    """A searched real-valued field in [low, high] (TOML: {low, high, log})."""

    low: float
    high: float
    log: bool = False  # sample on a log scale; needs low > 0

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


Dimension: TypeAlias = Categorical | IntRange | FloatRange


@dataclass(frozen=True)
class Resources:
    """What one trial asks of the executor; names follow submitit's generic parameters."""

    gpus: int = 1  # GPUs per trial, on one node; 0 for CPU-only studies
    cpus: int = 4  # CPU cores per trial: DataLoader workers + 1 is a good figure
    mem_gb: float | None = None  # host memory per trial in GiB; None: the executor's default
    timeout_min: int | None = None  # wall-clock limit per job in minutes; a job past it requeues and resumes
    partition: str | None = None  # SLURM partition; None: the cluster's default
    array_parallelism: int | None = None  # most trials running at once; None: the launcher's default
    slurm: Mapping[str, SlurmValue] = field(default_factory=lambda: MappingProxyType({}))  # extra options

    def slurm_kwargs(self) -> dict[str, SlurmValue]:
        """The [resources.slurm] extras as submitit parameters (`qos` -> `slurm_qos`)."""
        return {f"slurm_{key}": value for key, value in self.slurm.items()}

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "slurm"}
        out = {key: value for key, value in out.items() if value is not None}
        out["slurm"] = dict(self.slurm)
        return out


@dataclass(frozen=True)
class StudySpec:
    """One study file, validated: what to search, how, and what each trial may use."""

    name: str
    sampler: str  # grid | tpe | random
    n_trials: int  # configurations to run; each is run `repeats` times
    metric: str = "val_acc"
    direction: str = "maximize"
    pruner: str = "none"  # none | median | hyperband
    repeats: int = 1  # seeds per configuration: seed, seed + 1, ...
    pruner_startup_trials: int | None = None  # median: finished trials before pruning starts (None: 5)
    pruner_warmup_epochs: int | None = None  # epochs every trial runs before it can be pruned (None: 0)
    train: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    space: Mapping[str, Dimension] = field(default_factory=lambda: MappingProxyType({}))
    points: tuple[Mapping[str, Any], ...] = ()
    resources: Resources = field(default_factory=Resources)
    source: str = field(default="<study>", compare=False)  # the file, for messages

    @property
    def varied_keys(self) -> tuple[str, ...]:
        """The fields that differ between trials: the [space] keys, else the [[points]] keys."""
        if self.space:
            return tuple(self.space)
        return tuple(self.points[0]) if self.points else ()

    def train_config(self, params: Mapping[str, Any] | None = None, *, repeat: int = 0) -> TrainConfig:
        """The TrainConfig of one trial: [train] merged with the trial's params.

        Args:
            params: The trial's values of varied fields (a grid/point dict or the sampler's suggestion).
            repeat: Which of the `repeats` seeds to run, 0-based; it is added to the config's seed.

        Raises:
            SweepError: A param is fixed in [train], `repeat` is out of range, or the config is invalid.
        """
        params = dict(params or {})
        clash = sorted(set(params) & set(self.train))
        if clash:
            raise SweepError(f"{self.source}: trial params {clash} are fixed in [train]; they cannot vary")
        if not 0 <= repeat < self.repeats:
            raise SweepError(f"{self.source}: repeat {repeat} is out of range; the study has {self.repeats}")
        config = TrainConfig.from_dict({**self.train, **params}, source=f"{self.source} trial {params}")
        return config.replace(seed=config.seed + repeat) if repeat else config

    def grid(self) -> list[dict[str, Any]]:
        """Every configuration of the [space] as param dicts: the cartesian product, in a stable order.

        Keys vary in file order, the last key fastest. A study with no [space] has one empty configuration.

        Raises:
            SweepError: A dimension is a float range or an integer range without a step.
        """
        values = [_grid_values(key, dim, self.source) for key, dim in self.space.items()]
        return [dict(zip(self.space, combo, strict=True)) for combo in itertools.product(*values)]

    def planned_trials(self) -> list[dict[str, Any]]:
        """The param dicts of the trials the file fixes, in launch order, at most n_trials of them.

        Grid: the [[points]] or the grid. tpe/random: the [[points]], enqueued before sampling the
        remaining n_trials - len(points). No [space] and no [[points]]: n_trials empty dicts.
        """
        if self.points:
            return [dict(point) for point in self.points][: self.n_trials]
        if not self.space:
            return [{} for _ in range(self.n_trials)]
        return self.grid()[: self.n_trials] if self.sampler == "grid" else []

    def to_dict(self) -> dict[str, Any]:
        """The study as plain data in the TOML file's shape; `StudySpec.from_dict` reads it back."""
        study = {key: getattr(self, key) for key in STUDY_KEYS}
        return {
            "study": study,
            "train": dict(self.train),
            "space": {key: dim.to_dict() for key, dim in self.space.items()},
            "points": [dict(point) for point in self.points],
            "resources": self.resources.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<study>") -> StudySpec:
        """Parse and validate a study from plain data shaped like the TOML file (or `to_dict`'s output).

        Args:
            data: The parsed document: {"study": {...}, "train": {...}, "space": {...}, ...}.
            source: Names the origin in error messages, usually the file path.

        Raises:
            SweepError: Anything unknown, mistyped or invalid, naming `source`, the section and key.
        """
        return parse_study(data, source=source)


def load_study(name_or_path: str | Path, *, studies_dir: Path = STUDIES_DIR) -> StudySpec:
    """Load a study by name ("optimizers" -> studies_dir/optimizers.toml) or by a path ending in .toml.

    Args:
        name_or_path: A study name or the path of a .toml file (used as is).
        studies_dir: Where study names are looked up.

    Raises:
        SweepError: The study does not exist (listing the available ones) or the file is invalid.
    """
    path = _study_path(name_or_path, studies_dir)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"{path}: not valid TOML ({err}); fix the syntax") from None
    return parse_study(data, source=str(path), default_name=path.stem)


def study_name(name_or_path: str) -> str:
    """The stored study a `--study` argument means: a .toml file's study name, else the argument itself.

    Raises:
        SweepError: A .toml file that is missing or invalid.
    """
    return load_study(name_or_path).name if name_or_path.endswith(".toml") else name_or_path


def list_studies(studies_dir: Path = STUDIES_DIR) -> list[str]:
    """The names of the studies in `studies_dir` (its *.toml files), sorted."""
    return sorted(path.stem for path in Path(studies_dir).glob("*.toml") if path.is_file())


def parse_study(data: Mapping[str, Any], *, source: str, default_name: str | None = None) -> StudySpec:
    """Validate a parsed study document and build its StudySpec (see the module docstring for rules).

    Args:
        data: The parsed TOML (or JSON of `StudySpec.to_dict`).
        source: Names the file in error messages.
        default_name: The study name when [study] gives none (the file's stem).

    Raises:
        SweepError: Naming `source`, the section/key at fault, and the fix.
    """
    _check_sections(data, source)
    header = _parse_header(_table(data, "study", source), source, default_name)
    train = _parse_train(_table(data, "train", source), source)
    space = _parse_space(_table(data, "space", source), train, source)
    points = _parse_points(data.get("points", []), train, space, source)
    resources = _parse_resources(_table(data, "resources", source), source)
    _check_sampler(header["sampler"], space, points, source)
    _check_points_in_space(points, space, source)
    _check_repeats(header["repeats"], space, points, source)
    _check_device(train, resources, source)
    n_trials = _resolve_n_trials(header["n_trials"], header["sampler"], space, points, source)
    spec = StudySpec(
        **{**header, "n_trials": n_trials},
        train=_frozen(train),
        space=MappingProxyType(space),
        points=tuple(_frozen(point) for point in points),
        resources=resources,
        source=source,
    )
    if spec.sampler == "grid" and space:
        _check_grid_configs(spec)
    return spec


# -- errors and small readers ------------------------------------------------------------------------


def _error(source: str, where: str, problem: str) -> SweepError:
    return SweepError(f"{source}: {where} {problem}")


def _did_you_mean(key: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(table: Mapping[str, Any], known: tuple[str, ...], source: str, section: str) -> None:
    for key in table:
        if key not in known:
            hint = _did_you_mean(key, known)
            known_keys = ", ".join(known)
            raise _error(source, f"{section} key '{key}'", f"is unknown{hint}; known keys: {known_keys}")


def _check_fields(table: Mapping[str, Any], source: str, section: str) -> None:
    names = field_names()
    for key in table:
        if key not in names:
            hint = _did_you_mean(key, names)
            raise _error(
                source,
                f"{section} key '{key}'",
                f"is not a TrainConfig field{hint}; known fields: {', '.join(names)}",
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _table(data: Mapping[str, Any], section: str, source: str) -> Mapping[str, Any]:
    value = data.get(section, {})
    if not isinstance(value, Mapping):
        raise _error(source, f"[{section}]", f"must be a table, got {value!r}; write a [{section}] section")
    return value


def _check_sections(data: Mapping[str, Any], source: str) -> None:
    if not isinstance(data, Mapping):
        raise SweepError(f"{source}: expected a table of sections, got {type(data).__name__}")
    for key, value in data.items():
        if key in SECTIONS:
            continue
        is_table = isinstance(value, Mapping) or (
            isinstance(value, list) and bool(value) and all(isinstance(item, Mapping) for item in value)
        )
        if not is_table:
            raise _error(source, f"key '{key}'", "is outside any section; move it under [study] or [train]")
        hint = _did_you_mean(key, SECTIONS)
        known = "[study], [train], [space], [[points]], [resources]"
        raise _error(source, f"section [{key}]", f"is unknown{hint}; known sections: {known}")


def _choice(
    table: Mapping[str, Any], key: str, choices: typing.Iterable[str], default: str, source: str
) -> str:
    choices = tuple(choices)
    value = table.get(key, default)
    if not isinstance(value, str) or value not in choices:
        raise _error(source, f"[study] key '{key}'", f"is {value!r}; choose one of {', '.join(choices)}")
    return value


def _optional_int(
    table: Mapping[str, Any], key: str, *, minimum: int, section: str, source: str
) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if not _is_int(value) or value < minimum:
        raise _error(source, f"[{section}] key '{key}'", f"is {value!r}; give an integer >= {minimum}")
    return int(value)


def _int(table: Mapping[str, Any], key: str, *, default: int, minimum: int, section: str, source: str) -> int:
    value = _optional_int(table, key, minimum=minimum, section=section, source=source)
    return default if value is None else value


# -- [study] and [train] -------------------------------------------------------------------------------


def _parse_header(table: Mapping[str, Any], source: str, default_name: str | None) -> dict[str, Any]:
    _check_keys(table, STUDY_KEYS, source, "[study]")
    name = table.get("name", default_name)
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise _error(
            source, "[study] key 'name'", f"is {name!r}; give a name of letters, digits, '_', '-' or '.'"
        )
    if "sampler" not in table:
        raise _error(source, "[study] key 'sampler'", f"is missing; add one of {', '.join(SAMPLERS)}")
    metric = _choice(table, "metric", METRICS, "val_acc", source)
    natural = METRICS[metric]
    direction = _choice(table, "direction", DIRECTIONS, natural, source)
    if direction != natural:
        raise _error(
            source,
            "[study] key 'direction'",
            f"is '{direction}' but {metric} should be {natural}d; set direction = \"{natural}\" or drop it",
        )
    return {
        "name": name,
        "metric": metric,
        "direction": direction,
        "sampler": _choice(table, "sampler", SAMPLERS, "", source),
        "pruner": _choice(table, "pruner", PRUNERS, "none", source),
        "n_trials": _optional_int(table, "n_trials", minimum=1, section="study", source=source),
        "repeats": _int(table, "repeats", default=1, minimum=1, section="study", source=source),
        **_pruner_settings(table, source),
    }


def _pruner_settings(table: Mapping[str, Any], source: str) -> dict[str, int | None]:
    pruner = table.get("pruner", "none")
    settings = {
        key: _optional_int(table, key, minimum=0, section="study", source=source)
        for key in ("pruner_startup_trials", "pruner_warmup_epochs")
    }
    for key, value in settings.items():
        if value is None:
            continue
        if pruner == "none":
            raise _error(
                source, f"[study] key '{key}'", 'has no pruner to set; add pruner = "median" or drop it'
            )
        if key == "pruner_startup_trials" and pruner != "median":
            raise _error(
                source, f"[study] key '{key}'", f"only applies to the median pruner, not '{pruner}'; drop it"
            )
    return settings


def _parse_train(table: Mapping[str, Any], source: str) -> dict[str, Any]:
    _check_fields(table, source, "[train]")
    TrainConfig.from_dict(dict(table), source=f"{source} [train]")
    return dict(table)


def _build(train: Mapping[str, Any], params: Mapping[str, Any], source: str) -> TrainConfig:
    return TrainConfig.from_dict({**train, **params}, source=source)


# -- [space] ---------------------------------------------------------------------------------------------


def _parse_space(table: Mapping[str, Any], train: Mapping[str, Any], source: str) -> dict[str, Dimension]:
    _check_fields(table, source, "[space]")
    space: dict[str, Dimension] = {}
    for key, value in table.items():
        where = f"[space] key '{key}'"
        if key in train:
            raise _error(source, where, "is also fixed in [train]; keep it in one of the two")
        if isinstance(value, list):
            space[key] = _parse_categorical(key, value, train, source)
        elif isinstance(value, Mapping):
            space[key] = _parse_range(key, value, train, source)
        else:
            raise _error(
                source,
                where,
                f"is {value!r}; give a list of choices or a table {{low, high, log}} "
                "(a fixed value belongs in [train])",
            )
    return space


def _parse_categorical(key: str, values: list[Any], train: Mapping[str, Any], source: str) -> Categorical:
    where = f"[space] key '{key}'"
    if not values:
        raise _error(source, where, "is an empty list; give at least one choice")
    for value in values:
        _build(train, {key: value}, f"{source} [space] {key} = {value!r}")
    if len(set(values)) != len(values):
        raise _error(source, where, f"lists a choice twice in {values!r}; list each choice once")
    return Categorical(tuple(values))


def _parse_range(
    key: str, table: Mapping[str, Any], train: Mapping[str, Any], source: str
) -> IntRange | FloatRange:
    where = f"[space] key '{key}'"
    for entry in table:
        if entry not in RANGE_KEYS:
            raise _error(source, where, f"has unknown entry '{entry}'; a range takes {', '.join(RANGE_KEYS)}")
    low, high, log = table.get("low"), table.get("high"), table.get("log", False)
    if not (_is_number(low) and _is_number(high)):
        raise _error(source, where, f"needs numbers low and high, got low={low!r} high={high!r}")
    if not isinstance(log, bool):
        raise _error(source, where, f"has log = {log!r}; give true or false")
    kind = _numeric_kind(key)
    if kind is None:
        raise _error(source, where, "is not a numeric field; give a list of choices instead of a range")
    dim = _int_range(key, table, source) if kind == "int" else _float_range(key, table, source)
    if not dim.low < dim.high:
        raise _error(source, where, f"needs low < high, got low={dim.low!r} high={dim.high!r}")
    if dim.log and dim.low <= 0:
        raise _error(source, where, f"is a log range with low={dim.low!r}; low must be > 0")
    for end in (dim.low, dim.high):
        _build(train, {key: end}, f"{source} [space] {key} = {end!r}")
    return dim


def _numeric_kind(key: str) -> str | None:
    hint = field_types()[key]
    arms = typing.get_args(hint) or (hint,)
    if int in arms:
        return "int"
    if float in arms:
        return "float"
    return None


def _int_range(key: str, table: Mapping[str, Any], source: str) -> IntRange:
    where = f"[space] key '{key}'"
    low, high, step, log = table["low"], table["high"], table.get("step"), table.get("log", False)
    if not (_is_int(low) and _is_int(high)):
        raise _error(source, where, f"is an integer field; give integer low and high, got {low!r}, {high!r}")
    if step is not None and (not _is_int(step) or step < 1):
        raise _error(source, where, f"has step = {step!r}; give an integer >= 1")
    if log and step not in (None, 1):
        raise _error(source, where, f"is a log range with step = {step}; drop the step or the log")
    if step is not None and (high - low) % step:
        raise _error(source, where, f"has high - low = {high - low}, not a multiple of step {step}; fix high")
    return IntRange(low=low, high=high, step=step, log=log)


def _float_range(key: str, table: Mapping[str, Any], source: str) -> FloatRange:
    if "step" in table:
        raise _error(source, f"[space] key '{key}'", "has a step; step is only for integer fields, drop it")
    return FloatRange(low=float(table["low"]), high=float(table["high"]), log=table.get("log", False))


def _grid_values(key: str, dim: Dimension, source: str) -> list[Any]:
    where = f"[space] key '{key}'"
    if isinstance(dim, Categorical):
        return list(dim.choices)
    if isinstance(dim, IntRange) and dim.step is not None:
        return dim.values()
    if isinstance(dim, IntRange):
        raise _error(source, where, "is an integer range without step; grid needs a step or a list")
    raise _error(source, where, "is a float range; the grid sampler needs a list of values (or tpe/random)")


def _in_dimension(value: Any, dim: Dimension) -> bool:
    if isinstance(dim, Categorical):
        return value in dim.choices
    if not _is_number(value) or not dim.low <= value <= dim.high:
        return False
    if isinstance(dim, IntRange):
        return _is_int(value) and (dim.step is None or (value - dim.low) % dim.step == 0)
    return True


# -- [[points]] -------------------------------------------------------------------------------------------


def _parse_points(
    value: Any, train: Mapping[str, Any], space: Mapping[str, Dimension], source: str
) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(point, Mapping) for point in value):
        raise _error(source, "[[points]]", "must be an array of tables; begin each with a [[points]] line")
    points: list[dict[str, Any]] = []
    for number, point in enumerate(value, start=1):
        where = f"[[points]] #{number}"
        if not point:
            raise _error(source, where, "is empty; set the fields this configuration changes")
        _check_fields(point, source, where)
        for key in point:
            if key in train:
                raise _error(source, f"{where} key '{key}'", "is also fixed in [train]; keep it in one place")
        _build(train, point, f"{source} {where}")
        if point in points:
            first = points.index(dict(point)) + 1
            raise _error(source, where, f"repeats [[points]] #{first}; use [study] repeats for more seeds")
        points.append(dict(point))
    if not space:
        _check_same_keys(points, source)
    return points


def _check_same_keys(points: list[dict[str, Any]], source: str) -> None:
    for number, point in enumerate(points[1:], start=2):
        if set(point) != set(points[0]):
            raise _error(
                source,
                f"[[points]] #{number}",
                f"sets {sorted(point)} but #1 sets {sorted(points[0])}; give every point the same keys",
            )


def _check_points_in_space(points: list[dict[str, Any]], space: Mapping[str, Dimension], source: str) -> None:
    if not space:
        return
    for number, point in enumerate(points, start=1):
        where = f"[[points]] #{number}"
        if set(point) != set(space):
            raise _error(
                source, where, f"sets {sorted(point)}; with a [space] each point sets exactly {sorted(space)}"
            )
        for key, value in point.items():
            if not _in_dimension(value, space[key]):
                raise _error(source, f"{where} key '{key}'", f"is {value!r}, outside [space]; move it inside")


# -- [resources] ----------------------------------------------------------------------------------------


def _parse_resources(table: Mapping[str, Any], source: str) -> Resources:
    _check_keys(table, RESOURCE_KEYS, source, "[resources]")
    mem_gb = table.get("mem_gb")
    if mem_gb is not None and (not _is_number(mem_gb) or mem_gb <= 0):
        raise _error(source, "[resources] key 'mem_gb'", f"is {mem_gb!r}; give a number of GiB > 0")
    partition = table.get("partition")
    if partition is not None and (not isinstance(partition, str) or not partition):
        raise _error(source, "[resources] key 'partition'", f"is {partition!r}; give a partition name")
    slurm = table.get("slurm", {})
    if not isinstance(slurm, Mapping):
        raise _error(source, "[resources] key 'slurm'", "must be a table; write it as [resources.slurm]")
    return Resources(
        gpus=_int(table, "gpus", default=1, minimum=0, section="resources", source=source),
        cpus=_int(table, "cpus", default=4, minimum=1, section="resources", source=source),
        mem_gb=None if mem_gb is None else float(mem_gb),
        timeout_min=_optional_int(table, "timeout_min", minimum=1, section="resources", source=source),
        partition=partition,
        array_parallelism=_optional_int(
            table, "array_parallelism", minimum=1, section="resources", source=source
        ),
        slurm=MappingProxyType(_parse_slurm(slurm, source)),
    )


def _parse_slurm(table: Mapping[str, Any], source: str) -> dict[str, SlurmValue]:
    for key, value in table.items():
        where = f"[resources.slurm] key '{key}'"
        if key.startswith("slurm_"):
            raise _error(source, where, f"needs no prefix; write '{key.removeprefix('slurm_')}'")
        if not _SLURM_KEY_RE.fullmatch(key):
            raise _error(source, where, "is not an option name; use lowercase and underscores (qos, account)")
        if key in SLURM_GENERIC:
            raise _error(source, where, f"duplicates a generic setting; set [resources] {SLURM_GENERIC[key]}")
        if not isinstance(value, str | int | float):
            raise _error(source, where, f"is {value!r}; give a string, a number or true/false")
    return dict(table)


# -- checks across sections ------------------------------------------------------------------------------


def _check_sampler(
    sampler: str, space: Mapping[str, Dimension], points: list[dict[str, Any]], source: str
) -> None:
    where = "[study] key 'sampler'"
    if sampler == "grid" and space and points:
        raise _error(source, where, "is 'grid' with both [space] and [[points]]; a grid uses one of the two")
    if sampler == "grid":
        for key, dim in space.items():
            _grid_values(key, dim, source)
    elif points and not space:
        raise _error(
            source, where, f"is '{sampler}' but there is no [space] to sample; use \"grid\" to run [[points]]"
        )


def _check_repeats(
    repeats: int, space: Mapping[str, Dimension], points: list[dict[str, Any]], source: str
) -> None:
    varies_seed = "seed" in space or any("seed" in point for point in points)
    if repeats > 1 and varies_seed:
        raise _error(
            source, "[study] key 'repeats'", f"is {repeats} while 'seed' varies; drop one (repeats sets seed)"
        )


def _check_device(train: Mapping[str, Any], resources: Resources, source: str) -> None:
    device = train.get("device", "auto")
    if isinstance(device, str) and device.startswith("cuda") and resources.gpus == 0:
        raise _error(
            source, "[resources] key 'gpus'", f"is 0 but [train] device is '{device}'; set gpus or use cpu"
        )


def _resolve_n_trials(
    n_trials: int | None,
    sampler: str,
    space: Mapping[str, Dimension],
    points: list[dict[str, Any]],
    source: str,
) -> int:
    where = "[study] key 'n_trials'"
    if sampler == "grid" and (space or points):
        size = len(points) or _grid_size(space, source)
        if n_trials is not None and n_trials > size:
            raise _error(source, where, f"is {n_trials} but the grid has {size} configurations; lower it")
        return size if n_trials is None else n_trials
    if n_trials is None:
        if not space and not points:
            missing = "is missing; without [space] or [[points]] say how often to run [train]"
            raise _error(source, where, missing)
        raise _error(source, where, f"is missing; the {sampler} sampler needs the number of trials")
    if n_trials < len(points):
        raise _error(source, where, f"is {n_trials}, fewer than the {len(points)} [[points]]; raise it")
    return n_trials


def _grid_size(space: Mapping[str, Dimension], source: str) -> int:
    size = 1
    for key, dim in space.items():
        size *= len(_grid_values(key, dim, source))
    return size


def _check_grid_configs(spec: StudySpec) -> None:
    for params in spec.grid():
        _build(spec.train, params, f"{spec.source} [space] grid configuration {params}")


def _study_path(name_or_path: str | Path, studies_dir: Path) -> Path:
    text = str(name_or_path)
    if text.endswith(".toml"):
        path = Path(text)
        if not path.is_file():
            raise SweepError(f"{path}: study file not found; check the path")
        return path
    path = Path(studies_dir) / f"{text}.toml"
    if "/" in text or not path.is_file():
        available = ", ".join(list_studies(studies_dir)) or "none"
        raise SweepError(
            f"{path}: no study named '{text}'; available studies in {studies_dir}: {available} "
            "(or give a path ending in .toml)"
        )
    return path
