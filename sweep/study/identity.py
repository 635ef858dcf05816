"""A configuration is its values: every [train] and parameter value as its trial runs them.

A configuration's *key* names it by those values (a hash of their canonical JSON), so a study file may
grow (a value added to a [space] list, a [[points]] entry) and the stored trials still say which
configuration they ran. Two configurations with the same values (a study without [space] or
[[points]] runs [train] alone n_trials times) are told apart by their order: `#1`, `#2`, ...

The values leave out the fixed values a resumed run may change (`trainer.config.RESUMABLE_CHANGES`: how
the data is fed; a param among them, varied on purpose, stays) and the seed's count-up over repeats:
the configuration is the same whatever its seed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sweep.study.spec import StudySpec
from trainer.config import RESUMABLE_CHANGES, TrainConfig


@dataclass(frozen=True)
class PlannedConfig:
    """One configuration the study file fixes: its key, its params (the varied values) and all its values
    as canonical JSON."""

    key: str
    params: Mapping[str, Any]
    values: str


def config_values(train: Mapping[str, Any], params: Mapping[str, Any], *, program: bool) -> dict[str, Any]:
    """The values of the configuration `params` of a study whose fixed values are `train`: for the
    built-in trainer every TrainConfig field (defaults filled in), for a program [train] and the params.

    TrainConfig takes its fields as given (no conversion), and parsing checked every configuration of a
    grid, so its defaults merged with the values are its `to_dict()`, without building one per configuration.
    """
    merged = {**train, **params} if program else {**_trainer_defaults(), **train, **params}
    return {key: value for key, value in merged.items() if key not in RESUMABLE_CHANGES or key in params}


@functools.cache
def _trainer_defaults() -> dict[str, Any]:
    return TrainConfig().to_dict()


def values_text(values: Mapping[str, Any]) -> str:
    """The values as canonical JSON: sorted keys, no spaces (what the key is made of)."""
    return json.dumps(dict(values), sort_keys=True, separators=(",", ":"), default=str)


def config_key(values: str, occurrence: int = 0) -> str:
    """The key of the `occurrence`-th configuration (0-based) whose values are `values` (canonical JSON)."""
    digest = hashlib.sha256(values.encode()).hexdigest()[:24]
    return f"{digest}#{occurrence}" if occurrence else digest


def keyed(values: Sequence[str]) -> list[str]:
    """The key of each configuration in `values` (canonical JSON each), equal values numbered in order."""
    seen: dict[str, int] = {}
    keys = []
    for text in values:
        keys.append(config_key(text, seen.get(text, 0)))
        seen[text] = seen.get(text, 0) + 1
    return keys


def planned_configs(spec: StudySpec) -> list[PlannedConfig]:
    """The configurations the study file fixes, in launch order, each with its key."""
    planned = spec.planned_trials()
    texts = [values_text(spec_values(spec, params)) for params in planned]
    return [
        PlannedConfig(key=key, params=params, values=text)
        for key, params, text in zip(keyed(texts), planned, texts, strict=True)
    ]


def spec_values(spec: StudySpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the configuration `params` of the study `spec`."""
    return config_values(spec.train, params, program=spec.program is not None)
