"""The winner by mean: the one rule that ranks a study's configurations by the mean value of their runs.

Used wherever sweep names a best configuration by its mean: the base of a chained study (`sweep.base`),
the configurations that get confirmation trials (`sweep.study.plan.top_configs`) and the report's
search and confirmed winners (`sweep.report.confirm`) and its table's best row and ranking
(`sweep.report.data`), so that they name the same configuration.

The rule:
- a configuration's mean is over its finished runs' values; a value that is not finite (none, NaN,
  infinite) is no run's result and no part of any mean; a configuration with no such value is not ranked;
- the best mean first: the highest when the study maximizes, the lowest when it minimizes;
- equal means: the configuration with more finished runs first (its mean rests on more seeds), then the
  lower configuration number (the earlier configuration of the study file, or the sampler's earlier one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sweep.study.spec import maximizes


@dataclass(frozen=True)
class Mean:
    """One configuration's mean value and the number of finished runs it is the mean of."""

    config: int
    value: float
    n: int


def rank_key(value: float, n: int, config: float, direction: str) -> tuple[float, float, int, float]:
    """Where a configuration of mean `value` over `n` finished runs ranks: the smaller the key, the better
    (the module's rule). `config` is its number; a row that has none (a trial sweep did not make) passes
    infinity and ranks after every numbered configuration of an equal mean. A NaN mean ranks last."""
    if math.isnan(value):
        return (1.0, 0.0, 0, config)
    sign = -1.0 if maximizes(direction) else 1.0
    return (0.0, sign * value, -n, config)


def ranked(values: Mapping[int, Iterable[float | None]], direction: str) -> list[Mean]:
    """The configurations of `values` (configuration number -> its runs' values), best mean first, ties
    broken as the module says; `direction` is the study's ("maximize" or "minimize")."""
    means: list[Mean] = []
    for config, runs in values.items():
        finite = [float(v) for v in runs if v is not None and math.isfinite(v)]
        if finite:
            means.append(Mean(int(config), sum(finite) / len(finite), len(finite)))
    return sorted(means, key=lambda mean: rank_key(mean.value, mean.n, mean.config, direction))


def best(values: Mapping[int, Iterable[float | None]], direction: str) -> Mean | None:
    """The winner by mean of `values` (see `ranked`); None when no configuration has a finished run."""
    order = ranked(values, direction)
    return order[0] if order else None
