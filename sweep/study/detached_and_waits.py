"""[detached] (a detached launcher's own SLURM job) and [waits] (how often any launcher asks SLURM, how long
it waits out the scheduler or the study database when they do not answer).

Both were one [launcher] table before; its keys are still read, each with one line naming its new home.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweep.study.reader import TableReader
from sweep.study.spec import DetachedJob, Waits

DETACHED_KEYS = ("partition", "time_min", "mem_gb", "cpus")
# the [waits] keys, each any number > 0, and their defaults
WAITS_DEFAULTS = (("slurm_query_s", 30.0), ("scheduler_outage_min", 60.0), ("storage_outage_min", 10.0))
WAITS_KEYS = tuple(key for key, _ in WAITS_DEFAULTS)
# the old [launcher] table: each key's new table and name
OLD_LAUNCHER_KEYS = {
    "partition": ("detached", "partition"),
    "time_min": ("detached", "time_min"),
    "mem_gb": ("detached", "mem_gb"),
    "cpus": ("detached", "cpus"),
    "poll_s": ("waits", "slurm_query_s"),
    "scheduler_outage_min": ("waits", "scheduler_outage_min"),
    "storage_outage_min": ("waits", "storage_outage_min"),
}


def split_old_launcher(
    reader: TableReader, data: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    """[detached] and [waits] with the old [launcher] keys moved in; the line to print for each moved key.

    Raises:
        SweepError: A key given under both its old and its new name, or an unknown [launcher] key.
    """
    detached = dict(reader.table(data, "detached"))
    waits = dict(reader.table(data, "waits"))
    old = reader.table(data, "launcher")
    reader.check_keys(old, tuple(OLD_LAUNCHER_KEYS), "[launcher]")
    notices = []
    for key, value in old.items():
        table, new = OLD_LAUNCHER_KEYS[key]
        into = detached if table == "detached" else waits
        if new in into:
            raise reader.error(
                f"[launcher] key '{key}'", f"is also given as [{table}] {new}; drop the old one"
            )
        into[new] = value
        notices.append(
            f"{reader.source}: [launcher] {key} is now [{table}] {new}; read as that, rename it there"
        )
    return detached, waits, tuple(notices)


def parse_detached(reader: TableReader, table: Mapping[str, Any]) -> DetachedJob:
    """[detached]: the SLURM job a detached launcher (`sweep launch --detach`) runs as."""
    reader.check_keys(table, DETACHED_KEYS, "[detached]")
    partition = table.get("partition")
    if partition is not None and (not isinstance(partition, str) or not partition):
        raise reader.error("[detached] key 'partition'", f"is {partition!r}; give a partition name")
    mem_gb = table.get("mem_gb", 2.0)
    if isinstance(mem_gb, bool) or not isinstance(mem_gb, int | float) or mem_gb <= 0:
        raise reader.error("[detached] key 'mem_gb'", f"is {mem_gb!r}; give a number of GiB > 0")
    return DetachedJob(
        partition=partition,
        time_min=reader.optional_int(table, "time_min", minimum=1, section="detached"),
        mem_gb=float(mem_gb),
        cpus=reader.integer(table, "cpus", default=1, minimum=1, section="detached"),
    )


def parse_waits(reader: TableReader, table: Mapping[str, Any]) -> Waits:
    """[waits]: how often any launcher asks SLURM; how long it waits out the scheduler and the database."""
    reader.check_keys(table, WAITS_KEYS, "[waits]")
    values = {}
    for key, default in WAITS_DEFAULTS:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise reader.error(f"[waits] key '{key}'", f"is {value!r}; give a number > 0")
        values[key] = float(value)
    return Waits(**values)
