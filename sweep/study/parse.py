"""Study files -> StudySpec: every rule a study file must follow, checked before anything is stored.

A study file has these parts:

    [study]           name, metric, direction, sampler, pruner, n_trials, repeats,
                      pruner_startup_trials, pruner_warmup_epochs, max_failures,
                      confirm_top, confirm_repeats, budget_gpu_hours, base (`confirm_and_budget`),
                      stall_after_min, stall_action (`stall_keys`)
    [train]           TrainConfig fields fixed for every trial
    [space]           searched TrainConfig fields: a list = categorical choices; a table
                      {low, high, log, step} = a range (integers when low and high are, `step` for those)
    [[points]]        explicit configurations (tables of TrainConfig fields), each enqueued as one trial
    [resources]       executor-neutral requests, with extra SLURM options under [resources.slurm]
    [program]         the user's own training program, instead of the built-in trainer (`program`)
    [detached]        a detached launcher's own SLURM job; [waits]: how often SLURM is asked, how long
                      outages are waited out (`detached_and_waits`; the old [launcher] keys still read)

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
  pruned (median: n_warmup_steps; hyperband and successive_halving: their min_resource, at least 1, so
  the rungs are at warmup x 3^k epochs); `pruner_startup_trials`
  (median only, default 5 as in Optuna) is how many trials must finish before the median prunes at all.
  A study of 4 trials that wants pruning must therefore lower it. Either key without a pruner is an error.
* [resources.slurm] holds scalar SLURM options without the `slurm_` prefix (qos = "high"); options that
  duplicate a generic [resources] key (partition, time, mem, gres, ...) are errors.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sweep.errors import SweepError
from sweep.study.confirm_and_budget import check_confirm_and_budget, parse_confirm_and_budget
from sweep.study.detached_and_waits import (
    DETACHED_KEYS,
    OLD_LAUNCHER_KEYS,
    WAITS_KEYS,
    parse_detached,
    parse_waits,
    split_old_launcher,
)
from sweep.study.dimensions import check_points_in_space, parse_points, parse_space
from sweep.study.program import PROGRAM_KEYS, parse_program
from sweep.study.reader import TableReader, did_you_mean
from sweep.study.resources_table import RESOURCE_KEYS, parse_resources
from sweep.study.spec import (
    DIRECTIONS,
    METRICS,
    PRUNERS,
    SAMPLERS,
    STUDY_KEYS,
    Dimension,
    Resources,
    StudySpec,
    grid_values,
)
from sweep.study.stall_keys import parse_stall
from trainer.config import RELATED_FIELDS, TrainConfig

SECTIONS = ("study", "train", "space", "points", "resources", "program", "detached", "waits", "launcher")
# the keys each table accepts ([train], [space] and [[points]] take TrainConfig's fields, or a program's own)
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "study": STUDY_KEYS,
    "resources": RESOURCE_KEYS,
    "program": PROGRAM_KEYS,
    "detached": DETACHED_KEYS,
    "waits": WAITS_KEYS,
}
# keys still read under an old name: "table.key" -> "table.key" of today
OLD_KEYS: dict[str, str] = {
    f"launcher.{old}": f"{table}.{new}" for old, (table, new) in OLD_LAUNCHER_KEYS.items()
}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def load_toml(path: Path) -> StudySpec:
    """Read and validate the study file at `path`; its stem is the study's default name.

    Raises:
        SweepError: The file is not valid TOML or breaks a rule, naming the file, key and fix.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        # tomllib would raise this bare; an editor saving Latin-1 or cp1252 is the usual cause
        line = raw[: err.start].count(b"\n") + 1
        byte = raw[err.start : err.start + 1].hex()
        raise SweepError(
            f"{path}: line {line} has a byte that is not UTF-8 (0x{byte}); a study file must be UTF-8, "
            "save it as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"{path}: not valid TOML ({err}); fix the syntax") from None
    return parse_study(data, source=str(path), default_name=path.stem)


def parse_study(data: Mapping[str, Any], *, source: str, default_name: str | None = None) -> StudySpec:
    """Validate a parsed study document and build its StudySpec (see the module docstring for rules).

    Args:
        data: The parsed TOML (or JSON of `StudySpec.to_dict`).
        source: Names the file in error messages.
        default_name: The study name when [study] gives none (the file's stem).

    Raises:
        SweepError: Naming `source`, the section/key at fault, and the fix.
    """
    return _Reader(source).study(data, default_name)


class _Reader(TableReader):
    """Reads one study document into a StudySpec: section by section, then the checks across sections."""

    def study(self, data: Mapping[str, Any], default_name: str | None) -> StudySpec:
        self.check_sections(data)
        self.free = "program" in data  # the user's own program: its parameters are its own
        header = self.parse_header(self.table(data, "study"), default_name)
        train = self.parse_train(self.table(data, "train"))
        space = parse_space(self, self.table(data, "space"), train)
        points = parse_points(self, data.get("points", []), train, space)
        resources = parse_resources(self, self.table(data, "resources"))
        detached, waits, renamed = split_old_launcher(self, data)
        program = None
        if self.free:
            names = [*train, *space, *(key for point in points for key in point)]
            # with a base, a placeholder may name a value of its winner: checked once it is known
            program = parse_program(self, self.table(data, "program"), None if header["base"] else names)
        self.check_sampler(header["sampler"], space, points, header["pruner"])
        check_points_in_space(self, points, space)
        self.check_repeats(header["repeats"], space, points)
        if program is None:
            self.check_device(train, resources)
        n_trials = self.resolve_n_trials(header["n_trials"], header["sampler"], space, points)
        varies_seed = "seed" in space or any("seed" in point for point in points)
        check_confirm_and_budget(self, header, n_trials, varies_seed, resources.gpus)
        spec = StudySpec(
            **{**header, "n_trials": n_trials},
            train=_frozen(train),
            space=MappingProxyType(space),
            points=tuple(_frozen(point) for point in points),
            resources=resources,
            program=program,
            detached=parse_detached(self, detached),
            waits=parse_waits(self, waits),
            source=self.source,
            renamed=renamed,
        )
        if spec.sampler == "grid" and space:
            self.check_grid_configs(spec)
        return spec

    def check_sections(self, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping):
            raise SweepError(f"{self.source}: expected a table of sections, got {type(data).__name__}")
        for key, value in data.items():
            if key in SECTIONS:
                continue
            is_table = isinstance(value, Mapping) or (
                isinstance(value, list) and bool(value) and all(isinstance(item, Mapping) for item in value)
            )
            if not is_table:
                raise self.error(f"key '{key}'", "is outside any section; move it under [study] or [train]")
            hint = did_you_mean(key, SECTIONS)
            known = "[study], [train], [space], [[points]], [resources], [program], [detached], [waits]"
            raise self.error(f"section [{key}]", f"is unknown{hint}; known sections: {known}")

    # -- [study] and [train] ---------------------------------------------------------------------------------

    def parse_header(self, table: Mapping[str, Any], default_name: str | None) -> dict[str, Any]:
        self.check_keys(table, STUDY_KEYS, "[study]")
        name = table.get("name", default_name)
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise self.error(
                "[study] key 'name'", f"is {name!r}; give a name of letters, digits, '_', '-' or '.'"
            )
        if "sampler" not in table:
            raise self.error("[study] key 'sampler'", f"is missing; add one of {', '.join(SAMPLERS)}")
        metric, direction = self.metric_and_direction(table)
        return {
            "name": name,
            "metric": metric,
            "direction": direction,
            "sampler": self.choice(table, "sampler", SAMPLERS, ""),
            "pruner": self.choice(table, "pruner", PRUNERS, "none"),
            "n_trials": self.optional_int(table, "n_trials", minimum=1, section="study"),
            "repeats": self.integer(table, "repeats", default=1, minimum=1, section="study"),
            "max_failures": self.integer(table, "max_failures", default=3, minimum=1, section="study"),
            **self.pruner_settings(table),
            **parse_confirm_and_budget(self, table, name),
            **parse_stall(self, table),
        }

    def metric_and_direction(self, table: Mapping[str, Any]) -> tuple[str, str]:
        """The built-in trainer's metrics have a natural direction; a program's metric says none."""
        if self.free:
            metric = table.get("metric", "val_acc")
            if not isinstance(metric, str) or not metric:
                raise self.error("[study] key 'metric'", f"is {metric!r}; give a key your program logs")
            if "direction" not in table and metric not in METRICS:
                raise self.error(
                    "[study] key 'direction'",
                    f"is missing; say whether {metric} is to be maximized or minimized",
                )
            return metric, self.choice(table, "direction", DIRECTIONS, METRICS.get(metric, ""))
        metric = self.choice(table, "metric", METRICS, "val_acc")
        natural = METRICS[metric]
        direction = self.choice(table, "direction", DIRECTIONS, natural)
        if direction != natural:
            fix = f'set direction = "{natural}" or drop it'
            raise self.error(
                "[study] key 'direction'", f"is '{direction}' but {metric} should be {natural}d; {fix}"
            )
        return metric, direction

    def pruner_settings(self, table: Mapping[str, Any]) -> dict[str, int | None]:
        pruner = table.get("pruner", "none")
        settings = {
            key: self.optional_int(table, key, minimum=0, section="study")
            for key in ("pruner_startup_trials", "pruner_warmup_epochs")
        }
        for key, value in settings.items():
            if value is None:
                continue
            if pruner == "none":
                raise self.error(
                    f"[study] key '{key}'", 'has no pruner to set; add pruner = "median" or drop it'
                )
            if key == "pruner_startup_trials" and pruner != "median":
                raise self.error(
                    f"[study] key '{key}'", f"only applies to the median pruner, not '{pruner}'; drop it"
                )
        return settings

    def parse_train(self, table: Mapping[str, Any]) -> dict[str, Any]:
        self.check_fields(table, "[train]")
        if not self.free:
            TrainConfig.from_dict(dict(table), source=f"{self.source} [train]")
        return dict(table)

    # -- checks across sections ------------------------------------------------------------------------------

    def check_sampler(
        self, sampler: str, space: Mapping[str, Dimension], points: list[dict[str, Any]], pruner: str = "none"
    ) -> None:
        where = "[study] key 'sampler'"
        if pruner == "synchronous_halving" and sampler != "grid":
            raise self.error(
                "[study] key 'pruner'",
                f"is 'synchronous_halving' with the '{sampler}' sampler, which has no finite set of "
                'configurations to halve; use pruner = "successive_halving" there',
            )
        if sampler == "grid" and space and points:
            raise self.error(where, "is 'grid' with both [space] and [[points]]; a grid uses one of the two")
        if sampler == "grid":
            for key, dim in space.items():
                grid_values(key, dim, self.source)
        elif points and not space:
            raise self.error(
                where, f"is '{sampler}' but there is no [space] to sample; use \"grid\" to run [[points]]"
            )

    def check_repeats(
        self, repeats: int, space: Mapping[str, Dimension], points: list[dict[str, Any]]
    ) -> None:
        varies_seed = "seed" in space or any("seed" in point for point in points)
        if repeats > 1 and varies_seed:
            raise self.error(
                "[study] key 'repeats'", f"is {repeats} while 'seed' varies; drop one (repeats sets seed)"
            )

    def check_device(self, train: Mapping[str, Any], resources: Resources) -> None:
        device = train.get("device", "auto")
        if isinstance(device, str) and device.startswith("cuda") and resources.gpus == 0:
            raise self.error(
                "[resources] key 'gpus'", f"is 0 but [train] device is '{device}'; set gpus or use cpu"
            )

    def resolve_n_trials(
        self,
        n_trials: int | None,
        sampler: str,
        space: Mapping[str, Dimension],
        points: list[dict[str, Any]],
    ) -> int:
        where = "[study] key 'n_trials'"
        if sampler == "grid" and (space or points):
            size = len(points) or self.grid_size(space)
            if n_trials is not None and n_trials > size:
                raise self.error(where, f"is {n_trials} but the grid has {size} configurations; lower it")
            return size if n_trials is None else n_trials
        if n_trials is None:
            if not space and not points:
                missing = "is missing; without [space] or [[points]] say how often to run [train]"
                raise self.error(where, missing)
            raise self.error(where, f"is missing; the {sampler} sampler needs the number of trials")
        if n_trials < len(points):
            raise self.error(where, f"is {n_trials}, fewer than the {len(points)} [[points]]; raise it")
        return n_trials

    def grid_size(self, space: Mapping[str, Dimension]) -> int:
        size = 1
        for key, dim in space.items():
            size *= len(grid_values(key, dim, self.source))
        return size

    def check_grid_configs(self, spec: StudySpec) -> None:
        """Every configuration of the grid makes a valid TrainConfig, found without making each one.

        A field's value is valid or not with [train] alone, except within a group of RELATED_FIELDS: so
        each value of each dimension is checked once, then the combinations within each group (a
        10^6-point grid would otherwise be 10^6 configs made before a dry run prints its first line).
        """
        if self.free:  # a program's parameters: only the program knows their rules
            return
        values = {key: grid_values(key, dim, self.source) for key, dim in spec.space.items()}
        for key, choices in values.items():
            for value in choices:
                self.build(spec.train, {key: value}, f"[space] {key} = {value!r}")
        for group in RELATED_FIELDS:
            keys = [key for key in values if key in group]
            if len(keys) < 2:
                continue
            for combo in itertools.product(*(values[key] for key in keys)):
                params = dict(zip(keys, combo, strict=True))
                self.build(spec.train, params, f"[space] grid configuration {params}")


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))
