"""The small readers every part of a study file goes through; each error names the file, key and fix."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from typing import Any

from sweep.errors import SweepError
from trainer.config import TrainConfig, field_names


class TableReader:
    """Reads the tables of one study document; `source` (the file) leads every error it raises."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.free = False  # a [program] study: [train]/[space]/[[points]] take any keys, not TrainConfig's

    def error(self, where: str, problem: str) -> SweepError:
        return SweepError(f"{self.source}: {where} {problem}")

    def check_keys(self, table: Mapping[str, Any], known: tuple[str, ...], section: str) -> None:
        for key in table:
            if key not in known:
                hint = did_you_mean(key, known)
                known_keys = ", ".join(known)
                raise self.error(f"{section} key '{key}'", f"is unknown{hint}; known keys: {known_keys}")

    def check_fields(self, table: Mapping[str, Any], section: str, *, values: bool = True) -> None:
        """Every key is a TrainConfig field; for a [program] study any name, its `values` TOML scalars."""
        if self.free:  # the program's own parameters
            for key, value in table.items():
                if values:
                    self.check_scalar(value, f"{section} key '{key}'")
            return
        names = field_names()
        for key in table:
            if key not in names:
                hint = did_you_mean(key, names)
                raise self.error(
                    f"{section} key '{key}'",
                    f"is not a TrainConfig field{hint}; known fields: {', '.join(names)}",
                )

    def check_scalar(self, value: Any, where: str) -> None:
        if not isinstance(value, str | int | float | bool):
            raise self.error(where, f"is {value!r}; give a string, a number or true/false")

    def table(self, data: Mapping[str, Any], section: str) -> Mapping[str, Any]:
        value = data.get(section, {})
        if not isinstance(value, Mapping):
            raise self.error(f"[{section}]", f"must be a table, got {value!r}; write a [{section}] section")
        return value

    def choice(self, table: Mapping[str, Any], key: str, choices: typing.Iterable[str], default: str) -> str:
        choices = tuple(choices)
        value = table.get(key, default)
        if not isinstance(value, str) or value not in choices:
            raise self.error(f"[study] key '{key}'", f"is {value!r}; choose one of {', '.join(choices)}")
        return value

    def optional_int(self, table: Mapping[str, Any], key: str, *, minimum: int, section: str) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if not is_int(value) or value < minimum:
            raise self.error(f"[{section}] key '{key}'", f"is {value!r}; give an integer >= {minimum}")
        return int(value)

    def integer(self, table: Mapping[str, Any], key: str, *, default: int, minimum: int, section: str) -> int:
        value = self.optional_int(table, key, minimum=minimum, section=section)
        return default if value is None else value

    def build(self, train: Mapping[str, Any], params: Mapping[str, Any], where: str) -> TrainConfig | None:
        """The TrainConfig of [train] with `params`: TrainConfig's own checks, naming `where` on failure.
        None for a [program] study, whose values only its program knows."""
        if self.free:
            return None
        return TrainConfig.from_dict({**train, **params}, source=f"{self.source} {where}")


def did_you_mean(key: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
