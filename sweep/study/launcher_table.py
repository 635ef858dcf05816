"""[launcher]: a detached launcher's SLURM job, how often any launcher asks SLURM, how long it waits out
the scheduler or the study database when they do not answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweep.study.reader import TableReader
from sweep.study.spec import LauncherResources

LAUNCHER_KEYS = (
    "partition", "time_min", "mem_gb", "cpus", "poll_s", "scheduler_outage_min", "storage_outage_min",
)  # fmt: skip
# the keys that take any number > 0, and their defaults
DURATIONS = (("poll_s", 30.0), ("scheduler_outage_min", 60.0), ("storage_outage_min", 10.0))


def parse_launcher(reader: TableReader, table: Mapping[str, Any]) -> LauncherResources:
    """[launcher]: a detached launcher's SLURM job; how often a launcher asks SLURM, how long it retries."""
    reader.check_keys(table, LAUNCHER_KEYS, "[launcher]")
    partition = table.get("partition")
    if partition is not None and (not isinstance(partition, str) or not partition):
        raise reader.error("[launcher] key 'partition'", f"is {partition!r}; give a partition name")
    mem_gb = table.get("mem_gb", 2.0)
    if isinstance(mem_gb, bool) or not isinstance(mem_gb, int | float) or mem_gb <= 0:
        raise reader.error("[launcher] key 'mem_gb'", f"is {mem_gb!r}; give a number of GiB > 0")
    polite = {}
    for key, default in DURATIONS:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise reader.error(f"[launcher] key '{key}'", f"is {value!r}; give a number > 0")
        polite[key] = float(value)
    return LauncherResources(
        partition=partition,
        time_min=reader.optional_int(table, "time_min", minimum=1, section="launcher"),
        mem_gb=float(mem_gb),
        cpus=reader.integer(table, "cpus", default=1, minimum=1, section="launcher"),
        **polite,
    )
