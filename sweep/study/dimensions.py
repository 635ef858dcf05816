"""[space] and [[points]]: the searched fields (categoricals, integer and float ranges) and the explicit
configurations of a study file, each value checked against TrainConfig."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from sweep.study.reader import TableReader, is_int, is_number
from sweep.study.spec import Categorical, Dimension, FloatRange, IntRange
from trainer.config import field_types

RANGE_KEYS = ("low", "high", "log", "step")


def parse_space(r: TableReader, table: Mapping[str, Any], train: Mapping[str, Any]) -> dict[str, Dimension]:
    r.check_fields(table, "[space]", values=False)
    space: dict[str, Dimension] = {}
    for key, value in table.items():
        where = f"[space] key '{key}'"
        if key in train:
            raise r.error(where, "is also fixed in [train]; keep it in one of the two")
        if isinstance(value, list):
            space[key] = parse_categorical(r, key, value, train)
        elif isinstance(value, Mapping):
            space[key] = parse_range(r, key, value, train)
        else:
            raise r.error(
                where,
                f"is {value!r}; give a list of choices or a table {{low, high, log}} "
                "(a fixed value belongs in [train])",
            )
    return space


def parse_categorical(r: TableReader, key: str, values: list[Any], train: Mapping[str, Any]) -> Categorical:
    where = f"[space] key '{key}'"
    if not values:
        raise r.error(where, "is an empty list; give at least one choice")
    for value in values:
        if r.free:
            r.check_scalar(value, where)
        r.build(train, {key: value}, f"[space] {key} = {value!r}")
    if len(set(values)) != len(values):
        raise r.error(where, f"lists a choice twice in {values!r}; list each choice once")
    return Categorical(tuple(values))


def parse_range(
    r: TableReader, key: str, table: Mapping[str, Any], train: Mapping[str, Any]
) -> IntRange | FloatRange:
    where = f"[space] key '{key}'"
    for entry in table:
        if entry not in RANGE_KEYS:
            raise r.error(where, f"has unknown entry '{entry}'; a range takes {', '.join(RANGE_KEYS)}")
    low, high, log = table.get("low"), table.get("high"), table.get("log", False)
    if not (is_number(low) and is_number(high)):
        raise r.error(where, f"needs numbers low and high, got low={low!r} high={high!r}")
    if not isinstance(log, bool):
        raise r.error(where, f"has log = {log!r}; give true or false")
    kind = _numeric_kind(key) if not r.free else ("int" if is_int(low) and is_int(high) else "float")
    if kind is None:
        raise r.error(where, "is not a numeric field; give a list of choices instead of a range")
    dim = int_range(r, key, table) if kind == "int" else float_range(r, key, table)
    if not dim.low < dim.high:
        raise r.error(where, f"needs low < high, got low={dim.low!r} high={dim.high!r}")
    if dim.log and dim.low <= 0:
        raise r.error(where, f"is a log range with low={dim.low!r}; low must be > 0")
    for end in (dim.low, dim.high):
        r.build(train, {key: end}, f"[space] {key} = {end!r}")
    return dim


def int_range(r: TableReader, key: str, table: Mapping[str, Any]) -> IntRange:
    where = f"[space] key '{key}'"
    low, high, step, log = table["low"], table["high"], table.get("step"), table.get("log", False)
    if not (is_int(low) and is_int(high)):
        raise r.error(where, f"is an integer field; give integer low and high, got {low!r}, {high!r}")
    if step is not None and (not is_int(step) or step < 1):
        raise r.error(where, f"has step = {step!r}; give an integer >= 1")
    if log and step not in (None, 1):
        raise r.error(where, f"is a log range with step = {step}; drop the step or the log")
    if step is not None and (high - low) % step:
        raise r.error(where, f"has high - low = {high - low}, not a multiple of step {step}; fix high")
    return IntRange(low=low, high=high, step=step, log=log)


def float_range(r: TableReader, key: str, table: Mapping[str, Any]) -> FloatRange:
    if "step" in table:
        raise r.error(f"[space] key '{key}'", "has a step; step is only for integer fields, drop it")
    return FloatRange(low=float(table["low"]), high=float(table["high"]), log=table.get("log", False))


def parse_points(
    r: TableReader, value: Any, train: Mapping[str, Any], space: Mapping[str, Dimension]
) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(point, Mapping) for point in value):
        raise r.error("[[points]]", "must be an array of tables; begin each with a [[points]] line")
    points: list[dict[str, Any]] = []
    for number, point in enumerate(value, start=1):
        where = f"[[points]] #{number}"
        if not point:
            raise r.error(where, "is empty; set the fields this configuration changes")
        r.check_fields(point, where)
        for key in point:
            if key in train:
                raise r.error(f"{where} key '{key}'", "is also fixed in [train]; keep it in one place")
        r.build(train, point, where)
        if point in points:
            first = points.index(dict(point)) + 1
            raise r.error(where, f"repeats [[points]] #{first}; use [study] repeats for more seeds")
        points.append(dict(point))
    if not space:
        check_same_keys(r, points)
    return points


def check_same_keys(r: TableReader, points: list[dict[str, Any]]) -> None:
    for number, point in enumerate(points[1:], start=2):
        if set(point) != set(points[0]):
            raise r.error(
                f"[[points]] #{number}",
                f"sets {sorted(point)} but #1 sets {sorted(points[0])}; give every point the same keys",
            )


def check_points_in_space(
    r: TableReader, points: list[dict[str, Any]], space: Mapping[str, Dimension]
) -> None:
    if not space:
        return
    for number, point in enumerate(points, start=1):
        where = f"[[points]] #{number}"
        if set(point) != set(space):
            raise r.error(
                where, f"sets {sorted(point)}; with a [space] each point sets exactly {sorted(space)}"
            )
        for key, value in point.items():
            if not _in_dimension(value, space[key]):
                raise r.error(f"{where} key '{key}'", f"is {value!r}, outside [space]; move it inside")


def _numeric_kind(key: str) -> str | None:
    hint = field_types()[key]
    arms = typing.get_args(hint) or (hint,)
    if int in arms:
        return "int"
    if float in arms:
        return "float"
    return None


def _in_dimension(value: Any, dim: Dimension) -> bool:
    if isinstance(dim, Categorical):
        return value in dim.choices
    if not is_number(value) or not dim.low <= value <= dim.high:
        return False
    if isinstance(dim, IntRange):
        return is_int(value) and (dim.step is None or (value - dim.low) % dim.step == 0)
    return True
