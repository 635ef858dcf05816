"""The [study] keys that act after or around the search: `confirm_top`/`confirm_repeats` (rerun the best
configurations with further seeds), `budget_gpu_hours` (stop starting trials past a cost) and `base`
(another study's winner supplies the values this file does not set)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sweep.study.reader import TableReader, is_number

CONFIRM_KEYS = ("confirm_top", "confirm_repeats")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a study name, as [study] name


def parse_confirm_and_budget(reader: TableReader, table: Mapping[str, Any], name: str) -> dict[str, Any]:
    """confirm_top, confirm_repeats (both or neither, each >= 1), budget_gpu_hours (a number > 0) and
    base (another study's name; this study is `name`)."""
    given = [key for key in CONFIRM_KEYS if table.get(key) is not None]
    if len(given) == 1:
        other = next(key for key in CONFIRM_KEYS if key not in given)
        raise reader.error(f"[study] key '{given[0]}'", f"needs '{other}' too; set both or neither")
    confirm = {key: reader.integer(table, key, default=0, minimum=1, section="study") for key in CONFIRM_KEYS}
    budget = table.get("budget_gpu_hours")
    if budget is not None and (not is_number(budget) or not budget > 0):
        raise reader.error("[study] key 'budget_gpu_hours'", f"is {budget!r}; give a number of GPU-hours > 0")
    base = table.get("base")
    if base is not None and (not isinstance(base, str) or not _NAME_RE.fullmatch(base) or base == name):
        raise reader.error(
            "[study] key 'base'", f"is {base!r}; give the name of another study in the same storage"
        )
    return {**confirm, "budget_gpu_hours": None if budget is None else float(budget), "base": base}


def check_confirm_and_budget(
    reader: TableReader, header: Mapping[str, Any], n_trials: int, varies_seed: bool, gpus: int
) -> None:
    """Confirmation needs as many configurations as it confirms, and seeds it may count up; a budget
    counts GPU-hours, so a study whose trials use no GPU cannot have one."""
    if header["budget_gpu_hours"] is not None and gpus == 0:
        raise reader.error(
            "[study] key 'budget_gpu_hours'",
            "is set but [resources] gpus is 0: its trials use no GPU-hours; set gpus or drop the budget",
        )
    top = header["confirm_top"]
    if top > n_trials:
        raise reader.error(
            "[study] key 'confirm_top'", f"is {top} but the study runs {n_trials} configurations; lower it"
        )
    if top and varies_seed:
        raise reader.error(
            "[study] key 'confirm_repeats'", "is set while 'seed' varies; drop one (confirmation sets seed)"
        )
