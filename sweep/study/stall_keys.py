"""The [study] keys of a stalled trial (a job that stopped logging epochs while it still runs):
`stall_after_min` (how long without a new epoch is a stall; unset: 3x the trial's median time between
epochs, at least a minute) and `stall_action` (what the launcher then does: warn, requeue or fail)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweep.study.reader import TableReader, is_number

STALL_ACTIONS = ("warn", "requeue", "fail")


def parse_stall(reader: TableReader, table: Mapping[str, Any]) -> dict[str, Any]:
    """stall_after_min (a number of minutes > 0, or unset) and stall_action (default warn)."""
    after = table.get("stall_after_min")
    if after is not None and (not is_number(after) or not after > 0):
        raise reader.error("[study] key 'stall_after_min'", f"is {after!r}; give a number of minutes > 0")
    return {
        "stall_after_min": None if after is None else float(after),
        "stall_action": reader.choice(table, "stall_action", STALL_ACTIONS, "warn"),
    }
