"""[program]: the user's own training program, checked before anything is stored.

    [program]
    command = ["python", "train.py", "--lr", "{lr}"]   # or a string, split as a shell would (no shell runs)
    callable = "package.module:function"              # instead of command: function(params, run_dir)
    workdir = "."                                     # relative to the study file; default its folder
    env = { WANDB_MODE = "offline" }                  # extra environment variables
    python = "/opt/venv/bin/python"                   # the interpreter of a callable; default the launcher's
    stop_grace_s = 10                                 # SIGTERM, then this long to save and exit, then SIGKILL

Every `{name}` of the command is a key of [train], [space] or [[points]], or `run_dir` or `trial`. A
callable's module is looked up from `workdir` without running it (its package's `__init__` excepted),
and the function must be defined at its top level.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import shlex
import shutil
import string
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sweep.study.reader import TableReader
from sweep.study.spec import Program

PROGRAM_KEYS = ("command", "callable", "workdir", "env", "python", "stop_grace_s")
BUILTIN_PLACEHOLDERS = ("run_dir", "trial")
CHECK_TIMEOUT_S = 60.0  # importing a callable with another interpreter


def parse_program(r: TableReader, table: Mapping[str, Any], names: Iterable[str] | None) -> Program:
    """The [program] table as a Program; `names` are the keys of [train], [space] and [[points]] (None:
    a study with a base, whose placeholders are checked once its winner's values are known)."""
    r.check_keys(table, PROGRAM_KEYS, "[program]")
    has_command, has_callable = "command" in table, "callable" in table
    if has_command == has_callable:
        both = "sets both" if has_command else "sets neither of"
        raise r.error("[program]", f"{both} 'command' and 'callable'; give exactly one")
    workdir = _workdir(r, table.get("workdir", "."))
    env = _env(r, table.get("env", {}))
    python = table.get("python")
    if python is not None and (not isinstance(python, str) or not executable(python, workdir)):
        raise r.error("[program] key 'python'", f"is {python!r}, not an executable; give a python's path")
    grace = table.get("stop_grace_s", 10.0)
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= 3600:
        raise r.error("[program] key 'stop_grace_s'", f"is {grace!r}; give seconds, 0 to 3600")
    program = Program(workdir=str(workdir), env=MappingProxyType(env), stop_grace_s=float(grace))
    if has_command:
        command = _command(
            r, table["command"], None if names is None else set(names) | set(BUILTIN_PLACEHOLDERS)
        )
        return dataclasses.replace(program, command=command)
    target = table["callable"]
    _check_callable(r, target, workdir, python)
    return dataclasses.replace(program, callable=target, python=python)


def _workdir(r: TableReader, value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise r.error("[program] key 'workdir'", f"is {value!r}; give a folder, relative to the study file")
    base = Path(r.source).parent if Path(r.source).suffix == ".toml" else Path.cwd()
    folder = (base / value).resolve()
    if not folder.is_dir():
        raise r.error("[program] key 'workdir'", f"is '{value}', and {folder} is not a folder; fix the path")
    return folder


def _env(r: TableReader, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise r.error("[program] key 'env'", 'must be a table of NAME = value; write env = { NAME = "..." }')
    for key, item in value.items():
        r.check_scalar(item, f"[program] env '{key}'")
    return {
        str(key): str(item).lower() if isinstance(item, bool) else str(item) for key, item in value.items()
    }


def _command(r: TableReader, value: Any, names: set[str] | None) -> tuple[str, ...]:
    where = "[program] key 'command'"
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as err:
            raise r.error(where, f"cannot be split as a shell would ({err}); fix its quotes") from None
    if not isinstance(value, list) or not value or not all(isinstance(arg, str) for arg in value):
        raise r.error(where, f'is {value!r}; give a list of strings, e.g. ["python", "train.py"]')
    for arg in value:
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(arg) if field is not None]
        except ValueError as err:
            raise r.error(
                where, f"has a bad placeholder in {arg!r} ({err}); write {{{{ for a brace"
            ) from None
        for field in fields:
            if names is not None and field not in names:
                known = ", ".join(sorted(names))
                raise r.error(where, f"uses {{{field}}}, which no [train], [space] or [[points]] key sets; "
                              f"known: {known}")  # fmt: skip
    return tuple(value)


def placeholders(command: tuple[str, ...]) -> list[str]:
    """The `{name}` placeholders of a parsed command, built-in ones left out, in order."""
    fields = [field for arg in command for _, field, _, _ in string.Formatter().parse(arg) if field]
    return [field for field in dict.fromkeys(fields) if field not in BUILTIN_PLACEHOLDERS]


def executable(name: str, workdir: Path) -> bool:
    """Whether `name` runs from `workdir`: an executable file (a path relative to it) or a PATH command."""
    path = Path(name)
    if path.parent != Path("."):
        path = path if path.is_absolute() else workdir / path
        return path.is_file() and os.access(path, os.X_OK)
    return shutil.which(name) is not None


def _check_callable(r: TableReader, target: Any, workdir: Path, python: str | None) -> None:
    where = "[program] key 'callable'"
    module, _, function = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not module or not function.isidentifier():
        raise r.error(where, f'is {target!r}; give "package.module:function"')
    if python is not None:  # another interpreter: ask it
        code = f"import importlib; getattr(importlib.import_module({module!r}), {function!r})"
        try:
            done = subprocess.run(
                [python, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise r.error(where, f"could not be checked with {python} ({err})") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise r.error(where, f"is {target!r}, which does not import with {python}: {last}")
        return
    origin = _module_file(r, module, workdir, where)
    if origin is not None and not _defines(origin, function):
        raise r.error(where, f"is {target!r}, but {origin} defines no top-level '{function}'; fix the name")


def _module_file(r: TableReader, module: str, workdir: Path, where: str) -> Path | None:
    """The source file of `module` as seen from `workdir`; None when it has none (a compiled module)."""
    sys.path.insert(0, str(workdir))
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as err:
        raise r.error(
            where, f"names module '{module}', which does not import from {workdir} ({err})"
        ) from None
    finally:
        sys.path.remove(str(workdir))
    if found is None:
        raise r.error(where, f"names module '{module}', which is not found from {workdir}; fix the name")
    return Path(found.origin) if found.origin and found.origin.endswith(".py") else None


def _defines(path: Path, name: str) -> bool:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
            return True
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return True
        imported = node.names if isinstance(node, ast.ImportFrom | ast.Import) else []
        if any((alias.asname or alias.name.split(".")[0]) == name for alias in imported):
            return True
    return False
