"""Confirmation in the report: the search's winner (best mean over the search's seeds) and the confirmed
winner (best mean over all seeds, among the configurations rerun with further seeds); they may differ.
Both by `sweep.study.winner`, the rule a chained study's base follows too.

Works on `data`'s per-trial frame: its PARAM columns, state, value, config (the configuration's number)
and confirm (a confirmation trial).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sweep.study import winner

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
    """The winners, or None when no COMPLETE confirmation trial is stored (or nothing varies).

    Configurations are told apart by their number (the frame's config column) and ranked by
    `sweep.study.winner`, the rule the base of a chained study and the choice of what to confirm follow:
    all three name the same winner, ties included; a trial sweep did not make (no number) is no part.
    """
    keys = [PARAM + key for key in params]
    done = frame[(frame["state"] == "COMPLETE") & frame["value"].notna() & frame["config"].notna()]
    if not keys or not done["confirm"].any():
        return None
    confirmed = done[done["confirm"]].groupby("config", sort=False).size()
    search = _best(done[~done["confirm"]], keys, direction, None)
    best = _best(done, keys, direction, {int(config) for config in confirmed.index})
    if search is None or best is None:
        return None
    return Confirmation(search, best, len(confirmed), int(confirmed.max()))


def _best(trials: pd.DataFrame, keys: list[str], direction: str, among: set[int] | None) -> Winner | None:
    """The configuration of `trials` with the best mean value (of those in `among`, when given)."""
    values: dict[int, list[float]] = {}
    first: dict[int, int] = {}  # a configuration's first row: its params
    for row, (config, value) in enumerate(
        zip(trials["config"].tolist(), trials["value"].tolist(), strict=True)
    ):
        if among is None or int(config) in among:
            values.setdefault(int(config), []).append(float(value))
            first.setdefault(int(config), row)
    mean = winner.best(values, direction)
    if mean is None:
        return None
    row = trials.iloc[first[mean.config]]
    named = {name.removeprefix(PARAM): _plain(row[name]) for name in keys}
    return Winner(named, mean.value, mean.n)


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python one (for JSON), NaN (a param a trial lacks) as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value
