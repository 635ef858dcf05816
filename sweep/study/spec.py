"""A study as plain data: `StudySpec` (what to search, how, and what each trial may use) and its parts.

`sweep.study.parse` builds a StudySpec from a study file and checks every rule; this module holds the
frozen types every other part imports, and what follows from them alone (the grid, a trial's
TrainConfig).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar

from sweep.errors import SweepError
from trainer.config import TrainConfig
from trainer.metrics import Epoch, metric_values

SAMPLERS = ("grid", "tpe", "random")
PRUNERS = ("none", "median", "hyperband", "successive_halving", "synchronous_halving")
DIRECTIONS = ("maximize", "minimize")
T = TypeVar("T")
METRICS = {"val_acc": "maximize", "val_loss": "minimize", "train_acc": "maximize", "train_loss": "minimize"}


def maximizes(direction: str) -> bool:
    """Whether a higher value of the study's metric is better: the one reading of a direction."""
    return direction == "maximize"


def best_of(items: Iterable[T], direction: str, key: Callable[[T], float] | None = None) -> T | None:
    """The best of `items` by the metric (`key` of each; the item itself by default): the highest for
    maximize, the lowest for minimize; the first of equals; None when there is none."""
    pick = max if maximizes(direction) else min
    listed = list(items)
    return pick(listed, key=key or (lambda item: item)) if listed else None  # type: ignore[return-value]


def best_logged(history: list[Epoch], metric: str, direction: str) -> float | None:
    """The best finite value of `metric` over a run's logged epochs; None when none was logged."""
    return best_of([value for _, value in metric_values(history, metric)], direction)


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
    "max_failures",
    "confirm_top",
    "confirm_repeats",
    "budget_gpu_hours",
    "base",
    "stall_after_min",
    "stall_action",
)

SlurmValue: TypeAlias = str | int | float | bool


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
    nodes: int = 1  # nodes per trial; more than 1 on SLURM only
    tasks_per_node: int = 1  # processes (ranks) per node, each with torchrun's variables; 1 per GPU is usual
    slurm: Mapping[str, SlurmValue] = field(default_factory=lambda: MappingProxyType({}))  # extra options

    @property
    def trial_gpus(self) -> int:
        """The GPUs one trial holds, all its nodes together: what its GPU-hours count (`sweep.gpu_hours`)."""
        return self.nodes * self.gpus

    @property
    def tasks(self) -> int:
        """The trial's processes, all nodes together (its torch.distributed world size)."""
        return self.nodes * self.tasks_per_node

    def slurm_kwargs(self) -> dict[str, SlurmValue]:
        """The [resources.slurm] extras as submitit parameters (`qos` -> `slurm_qos`)."""
        return {f"slurm_{key}": value for key, value in self.slurm.items()}

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "slurm"}
        out = {key: value for key, value in out.items() if value is not None}
        for key in ("nodes", "tasks_per_node"):  # as a file omits them: older studies' shape unchanged
            if out[key] == 1:
                del out[key]
        out["slurm"] = dict(self.slurm)
        return out


@dataclass(frozen=True)
class DetachedJob:
    """[detached]: what a detached launcher (`sweep launch --detach`) asks of SLURM as its own job.

    A launcher only reads files and the database: one core and 2 GiB are plenty. At its time limit or
    on preemption it requeues itself and re-attaches to its trials, so `time_min` bounds one stretch of
    it, not the study.
    """

    partition: str | None = None  # None: the cluster's default partition
    time_min: int | None = None  # None: the partition's default time limit
    mem_gb: float = 2.0
    cpus: int = 1

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class Waits:
    """[waits]: how politely any launcher (detached or not) treats the scheduler, and how long it waits
    out the scheduler or the study database when they do not answer."""

    slurm_query_s: float = 30.0  # squeue/sacct at most this often in steady state
    scheduler_outage_min: float = 60.0  # how long sbatch failures (controller down, timed out) are retried
    storage_outage_min: float = 10.0  # how long a study database that does not answer is waited for

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class Program:
    """The user's own training program ([program]): a command or a Python callable, run once per trial.

    Exactly one of `command` (arguments with `{name}` placeholders, run without a shell) and `callable`
    ("package.module:function", called as `function(params, run_dir)`). The trial's values reach the
    program through its environment (SWEEP_PARAMS and friends) and the placeholders.
    """

    command: tuple[str, ...] = ()
    callable: str | None = None
    workdir: str = "."  # the folder it runs in: absolute once parsed (default: the study file's folder)
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # extra variables
    python: str | None = None  # the interpreter of a callable; None: the launcher's
    stop_grace_s: float = 10.0  # after SIGTERM (prune, cancel, preemption), seconds until SIGKILL

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Program:
        """A Program from `to_dict`'s output (checked already: it was parsed from a study file)."""
        return cls(
            command=tuple(data.get("command", ())),
            callable=data.get("callable"),
            workdir=str(data.get("workdir", ".")),
            env=MappingProxyType({str(k): str(v) for k, v in dict(data.get("env", {})).items()}),
            python=data.get("python"),
            stop_grace_s=float(data.get("stop_grace_s", 10.0)),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "workdir": self.workdir,
            "env": dict(self.env),
            "stop_grace_s": self.stop_grace_s,
        }
        if self.command:
            out["command"] = list(self.command)
        if self.callable is not None:
            out["callable"] = self.callable
        if self.python is not None:
            out["python"] = self.python
        return out


@dataclass(frozen=True)
class StudySpec:
    """One study file, validated: what to search, how, and what each trial may use."""

    name: str
    sampler: str  # grid | tpe | random
    n_trials: int  # configurations to run; each is run `repeats` times
    metric: str = "val_acc"
    direction: str = "maximize"
    pruner: str = "none"  # none | median | hyperband | successive_halving
    repeats: int = 1  # seeds per configuration: seed, seed + 1, ...
    pruner_startup_trials: int | None = None  # median: finished trials before pruning starts (None: 5)
    pruner_warmup_epochs: int | None = None  # epochs every trial runs before it can be pruned (None: 0)
    max_failures: int = 3  # this many trials failing in a row stop the launcher (a typo must not burn a grid)
    confirm_top: int = 0  # once the search is done, rerun this many best configurations ...
    confirm_repeats: int = 0  # ... with this many further seeds each (repeats after the search's)
    budget_gpu_hours: float | None = None  # no new trial once used + expected GPU-hours reach it
    base: str | None = None  # a study whose winner supplies the values this file does not set (`sweep.base`)
    stall_after_min: float | None = None  # no new epoch for this long is a stall (None: 3x the median gap)
    stall_action: str = "warn"  # warn | requeue | fail: what the launcher does with a stalled trial
    train: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    space: Mapping[str, Dimension] = field(default_factory=lambda: MappingProxyType({}))
    points: tuple[Mapping[str, Any], ...] = ()
    resources: Resources = field(default_factory=Resources)
    program: Program | None = None  # None: the built-in trainer (trainer.run) with TrainConfig fields
    detached: DetachedJob = field(default_factory=DetachedJob)  # a detached launcher's own SLURM job
    waits: Waits = field(default_factory=Waits)  # how often SLURM is asked, how long outages are waited out
    source: str = field(default="<study>", compare=False)  # the file, for messages
    # one line per old key name the file used ([launcher] poll_s ...), for the command to print
    renamed: tuple[str, ...] = field(default=(), compare=False)

    @property
    def seeds(self) -> int:
        """Seed offsets a configuration may run with: the search's `repeats`, then the confirmation's."""
        return self.repeats + (self.confirm_repeats if self.confirm_top else 0)

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
        params = self._checked(params, repeat)
        config = TrainConfig.from_dict({**self.train, **params}, source=f"{self.source} trial {params}")
        return config.replace(seed=config.seed + repeat) if repeat else config

    def trial_values(self, params: Mapping[str, Any] | None = None, *, repeat: int = 0) -> dict[str, Any]:
        """Every value of one trial, as its job gets them: the TrainConfig's fields for the built-in
        trainer; for a program, [train] merged with the params, `seed` counted up by `repeat` (from
        [train] seed, else 0) when the study has repeats.

        Raises:
            SweepError: As `train_config`.
        """
        if self.program is None:
            return self.train_config(params, repeat=repeat).to_dict()
        values = {**self.train, **self._checked(params, repeat)}
        if self.seeds > 1:
            base = values.get("seed", 0)
            values["seed"] = (base if isinstance(base, int) else 0) + repeat
        return values

    def _checked(self, params: Mapping[str, Any] | None, repeat: int) -> dict[str, Any]:
        """A trial's params, once they are known not to clash with [train] and `repeat` is in range."""
        params = dict(params or {})
        clash = sorted(set(params) & set(self.train))
        if clash:
            raise SweepError(f"{self.source}: trial params {clash} are fixed in [train]; they cannot vary")
        if not 0 <= repeat < self.seeds:
            raise SweepError(f"{self.source}: repeat {repeat} is out of range; the study has {self.seeds}")
        return params

    def grid(self) -> list[dict[str, Any]]:
        """Every configuration of the [space] as param dicts: the cartesian product, in a stable order.

        Keys vary in file order, the last key fastest. A study with no [space] has one empty configuration.

        Raises:
            SweepError: A dimension is a float range or an integer range without a step.
        """
        values = [grid_values(key, dim, self.source) for key, dim in self.space.items()]
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
        """The study as plain data in the TOML file's shape; `sweep.study.parse.parse_study` reads it back."""
        study = {key: getattr(self, key) for key in STUDY_KEYS}
        unset = {"budget_gpu_hours": self.budget_gpu_hours is None, "confirm_top": not self.confirm_top}
        unset["base"] = self.base is None
        unset["stall_after_min"] = self.stall_after_min is None
        unset["stall_action"] = self.stall_action == "warn"
        unset["confirm_repeats"] = unset["confirm_top"]
        study = {key: value for key, value in study.items() if not unset.get(key)}  # as a file omits them
        return {
            "study": study,
            "train": dict(self.train),
            "space": {key: dim.to_dict() for key, dim in self.space.items()},
            "points": [dict(point) for point in self.points],
            "resources": self.resources.to_dict(),
            "detached": self.detached.to_dict(),
            "waits": self.waits.to_dict(),
            **({"program": self.program.to_dict()} if self.program is not None else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def grid_values(key: str, dim: Dimension, source: str) -> list[Any]:
    """Every value the grid sampler runs of [space] key `key`.

    Raises:
        SweepError: A float range, or an integer range without a step, naming `source` and the key.
    """
    where = f"{source}: [space] key '{key}'"
    if isinstance(dim, Categorical):
        return list(dim.choices)
    if isinstance(dim, IntRange) and dim.step is not None:
        return dim.values()
    if isinstance(dim, IntRange):
        raise SweepError(f"{where} is an integer range without step; grid needs a step or a list")
    raise SweepError(f"{where} is a float range; the grid sampler needs a list of values (or tpe/random)")


def params_text(params: Mapping[str, Any]) -> str:
    """`key=value` pairs, floats in their shortest form (lr=0.05 weight_decay=0.0005)."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
