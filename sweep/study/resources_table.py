"""[resources] of a study file: executor-neutral requests per trial, with extra SLURM options under
[resources.slurm] (scalars, without the `slurm_` prefix; none that a generic key already sets)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sweep.study.reader import TableReader, is_number
from sweep.study.spec import Resources, SlurmValue

RESOURCE_KEYS = (
    "gpus",
    "cpus",
    "mem_gb",
    "timeout_min",
    "partition",
    "array_parallelism",
    "nodes",
    "tasks_per_node",
    "slurm",
)
# SLURM options that the generic [resources] keys already set: option -> the key to use instead.
SLURM_GENERIC = {
    "partition": "partition",
    "time": "timeout_min",
    "timeout_min": "timeout_min",
    "gres": "gpus",
    "gpus_per_node": "gpus",
    "gpus_per_task": "gpus",
    "cpus_per_task": "cpus",
    "mem": "mem_gb",
    "mem_gb": "mem_gb",
    "array_parallelism": "array_parallelism",
    "nodes": "nodes",
    "ntasks_per_node": "tasks_per_node",
    "tasks_per_node": "tasks_per_node",
    "ntasks": "tasks_per_node",
}
_SLURM_KEY_RE = re.compile(r"[a-z][a-z0-9_]*")


def parse_resources(reader: TableReader, table: Mapping[str, Any]) -> Resources:
    """[resources]: what each trial's job asks for, executor-neutral; extra SLURM options under
    [resources.slurm]."""
    reader.check_keys(table, RESOURCE_KEYS, "[resources]")
    mem_gb = table.get("mem_gb")
    if mem_gb is not None and (not is_number(mem_gb) or mem_gb <= 0):
        raise reader.error("[resources] key 'mem_gb'", f"is {mem_gb!r}; give a number of GiB > 0")
    partition = table.get("partition")
    if partition is not None and (not isinstance(partition, str) or not partition):
        raise reader.error("[resources] key 'partition'", f"is {partition!r}; give a partition name")
    slurm = table.get("slurm", {})
    if not isinstance(slurm, Mapping):
        raise reader.error("[resources] key 'slurm'", "must be a table; write it as [resources.slurm]")
    return Resources(
        gpus=reader.integer(table, "gpus", default=1, minimum=0, section="resources"),
        cpus=reader.integer(table, "cpus", default=4, minimum=1, section="resources"),
        mem_gb=None if mem_gb is None else float(mem_gb),
        timeout_min=reader.optional_int(table, "timeout_min", minimum=1, section="resources"),
        partition=partition,
        array_parallelism=reader.optional_int(table, "array_parallelism", minimum=1, section="resources"),
        nodes=reader.integer(table, "nodes", default=1, minimum=1, section="resources"),
        tasks_per_node=reader.integer(table, "tasks_per_node", default=1, minimum=1, section="resources"),
        slurm=MappingProxyType(parse_slurm(reader, slurm)),
    )


def parse_slurm(reader: TableReader, table: Mapping[str, Any]) -> dict[str, SlurmValue]:
    for key, value in table.items():
        where = f"[resources.slurm] key '{key}'"
        if key.startswith("slurm_"):
            raise reader.error(where, f"needs no prefix; write '{key.removeprefix('slurm_')}'")
        if not _SLURM_KEY_RE.fullmatch(key):
            raise reader.error(where, "is not an option name; use lowercase and underscores (qos, account)")
        if key in SLURM_GENERIC:
            raise reader.error(where, f"duplicates a generic setting; set [resources] {SLURM_GENERIC[key]}")
        if not isinstance(value, str | int | float):
            raise reader.error(where, f"is {value!r}; give a string, a number or true/false")
    return dict(table)
