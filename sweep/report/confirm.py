"""Confirmation in the report: the search's winner (best mean over the search's seeds) and the confirmed
winner (best mean over all seeds, among the configurations rerun with further seeds); they may differ.

Works on `data`'s per-trial frame: its PARAM columns, state, value and confirm (a confirmation trial).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sweep.study.spec import maximizes

PARAM = "param."  # as sweep.report.data's param columns


@dataclass(frozen=True)
class Winner:
    """One configuration's mean value and the COMPLETE trials (seeds) it is the mean of."""

    params: dict[str, Any]
    value: float
    n: int


@dataclass(frozen=True)
class Confirmation:
    """The search's winner and the confirmed winner of a study with confirmation trials."""

    search: Winner  # best mean value over the search's trials alone
    confirmed: Winner  # best mean value over all trials, among the configurations confirmed
    configs: int  # configurations that got confirmation trials
    seeds: int  # confirmation trials per configuration (the most any got)

    @property
    def differ(self) -> bool:
        return self.search.params != self.confirmed.params

    def to_dict(self) -> dict[str, Any]:
        def winner(item: Winner) -> dict[str, Any]:
            return {"params": item.params, "value": item.value, "n": item.n}

        return {
            "search_winner": winner(self.search),
            "confirmed_winner": winner(self.confirmed),
            "configs": self.configs,
            "seeds": self.seeds,
            "differ": self.differ,
        }


def confirmation(frame: pd.DataFrame, params: tuple[str, ...], direction: str) -> Confirmation | None:
    """The winners, or None when no COMPLETE confirmation trial is stored (or nothing varies)."""
    keys = [PARAM + key for key in params]
    done = frame[(frame["state"] == "COMPLETE") & frame["value"].notna()]
    if not keys or not done["confirm"].any():
        return None
    confirmed = done[done["confirm"]].groupby(keys, sort=False, dropna=False).size()
    search = _best(done[~done["confirm"]], keys, direction, None)
    best = _best(done, keys, direction, set(confirmed.index))
    if search is None or best is None:
        return None
    return Confirmation(search, best, len(confirmed), int(confirmed.max()))


def _best(trials: pd.DataFrame, keys: list[str], direction: str, among: set[Any] | None) -> Winner | None:
    """The configuration of `trials` with the best mean value (of those in `among`, when given)."""
    grouped = trials.groupby(keys, sort=False, dropna=False)["value"]
    means, counts = grouped.mean(), grouped.size()
    if among is not None:
        means = means[[key in among for key in means.index]]
    means = means[means.notna()]
    if not len(means):
        return None
    key = means.idxmax() if maximizes(direction) else means.idxmin()
    values = key if isinstance(key, tuple) else (key,)
    named = {name.removeprefix(PARAM): _plain(value) for name, value in zip(keys, values, strict=True)}
    return Winner(named, float(means[key]), int(counts[key]))


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python one (for JSON), NaN (a param a trial lacks) as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value
