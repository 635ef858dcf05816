"""Checks before a launch (and a dry run) stores or submits anything: what would make every trial fail.

Run on the launcher's machine for the executors whose jobs run there (local, debug): the data each
configuration reads is present, the GPUs a trial asks for are there, the program's command exists. A
SLURM job runs elsewhere, where another file system and other GPUs may be, so its trials find out;
for slurm, the controller is asked whether it answers (`scontrol ping`).
"""

from __future__ import annotations

from pathlib import Path

from sweep.executors import resolve
from sweep.executors.local import machine_gpus
from sweep.executors.slurm_queries import controller_problem
from sweep.study.files import shipped_dir
from sweep.study.program import executable
from sweep.study.spec import StudySpec

ON_THIS_MACHINE = ("local", "debug")


def problems(spec: StudySpec, executor: str) -> list[str]:
    """What stops the study's trials from running with `executor`, one line each; [] when nothing."""
    kind = resolve(executor)
    if kind == "slurm":
        problem = controller_problem()
        return [] if problem is None else [f"--executor {executor}: {problem}"]
    if kind not in ON_THIS_MACHINE:
        return []
    found = _nodes(spec, kind)
    found += _gpus(spec, kind)
    found += _program(spec) if spec.program is not None else _data(spec)
    return found


def _nodes(spec: StudySpec, kind: str) -> list[str]:
    """A trial of several nodes runs on SLURM only; `debug` runs a trial's one task in the launcher."""
    resources = spec.resources
    if resources.nodes > 1:
        return [
            f"{spec.source}: [resources] nodes = {resources.nodes}, but --executor {kind} runs a trial on "
            "this machine alone; set nodes = 1 (and tasks_per_node for its processes) or use --executor slurm"
        ]
    if kind == "debug" and resources.tasks_per_node > 1:
        return [
            f"{spec.source}: [resources] tasks_per_node = {resources.tasks_per_node}, but --executor debug "
            "runs one process in the launcher; use --executor local or slurm"
        ]
    return []


def _gpus(spec: StudySpec, kind: str) -> list[str]:
    wanted = spec.resources.gpus
    if kind != "local" or wanted == 0:
        return []
    here = machine_gpus()
    if len(here) >= wanted:
        return []
    seen = (
        f"{len(here)} ({', '.join(map(str, here))})"
        if here
        else "none (no nvidia-smi, no CUDA_VISIBLE_DEVICES)"
    )
    found = (
        f"{spec.source}: [resources] gpus = {wanted}, but the GPUs this machine shows local jobs are {seen}"
    )
    return [f"{found}; {_cpu_fix(spec)}"]


def _edit(spec: StudySpec) -> str:
    """Where to make a change: the study file, or for a shipped study a copy of it in ./studies/."""
    if Path(spec.source).resolve().parent == shipped_dir().resolve():
        return f"copy it to ./studies/{spec.name}.toml (sweep uses that copy) and in the copy "
    return ""


def _cpu_fix(spec: StudySpec) -> str:
    """The fix of a GPU study on a machine without GPUs: a program's study sets gpus alone; the
    trainer's also its device, and a CPU run of a full-size ResNet is said to take days."""
    if spec.program is not None:
        return f"{_edit(spec)}set [resources] gpus = 0 to run on the CPU, or use --executor slurm"
    return (
        f'{_edit(spec)}set gpus = 0 and [train] device = "cpu" to run on the CPU (a full-size ResNet there '
        "takes days), or use --executor slurm"
    )


def _data(spec: StudySpec) -> list[str]:
    """Each CIFAR-10 data dir the built-in trainer would read, that holds no data set (and no download)."""
    from trainer.data import BATCHES_DIR, find_batches_dir  # numpy, no torch

    planned = spec.planned_trials() or [{}]
    if not {"dataset", "data_dir", "download"} & set(spec.varied_keys):
        planned = planned[:1]  # every configuration reads the same data
    configs = [spec.trial_values(params) for params in planned]
    missing: dict[str, None] = {}
    for values in configs:
        if values.get("dataset") != "cifar10" or values.get("download"):
            continue
        data_dir = str(values.get("data_dir", "data"))
        if find_batches_dir(Path(data_dir)) is None:
            missing[data_dir] = None
    return [
        f"{spec.source}: data_dir '{folder}' (as the jobs see it, from {Path.cwd()}) has no {BATCHES_DIR}; "
        f"put CIFAR-10 there, or {_edit(spec)}set [train] download = true or data_dir = a folder that has it"
        for folder in missing
    ]


def _program(spec: StudySpec) -> list[str]:
    assert spec.program is not None
    if not spec.program.command:
        return []  # a callable: checked when the study file was read
    first = spec.program.command[0]
    if "{" in first or executable(first, Path(spec.program.workdir)):
        return []
    return [
        f"{spec.source}: [program] command runs '{first}', which is not found (from {spec.program.workdir}); "
        "fix the name or put it on PATH"
    ]
