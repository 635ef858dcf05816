"""Helpers for launcher tests: tiny study files, the CLI as a real subprocess, and process checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import optuna
import pytest

from sweep.store.storage import default_url, open_storage, open_study
from sweep.study.plan import make_pruner, make_sampler
from sweep.study.spec import StudySpec
from tests.conftest import deadline, main_in_process
from trainer.metrics import EpochMetrics, TrainResult
from trainer.paths import RunPaths

ROOT = Path(__file__).resolve().parents[2]

# Trains in about a second per epoch on a CPU (tests/conftest.py's tiny_config as study fields).
TINY_TRAIN: dict[str, Any] = {
    "dataset": "fake",
    "depth": 8,
    "epochs": 2,
    "batch_size": 32,
    "num_workers": 0,
    "fake_train_size": 160,
    "fake_test_size": 40,
    "val_size": 32,
    "device": "cpu",
    "momentum": 0.9,
}
TINY_RESOURCES: dict[str, Any] = {"gpus": 0, "cpus": 1, "timeout_min": 10}
# Test studies ask SLURM every second, not every 30 s (the production default, which cluster guides ask
# for): a test waits on the launcher to see a job requeued, cancelled or ended by SLURM. Tests of the
# defaults themselves write their own [waits] (or pass `waits={}`).
TEST_WAITS: dict[str, Any] = {"slurm_query_s": 1}
TEST_WAITS_TOML = "[waits]\nslurm_query_s = 1\n"


def program_study(
    folder: Path, name: str, args: list[str], *, epochs: int, lrs: list[float], extra: str = ""
) -> Path:
    """folder/NAME.toml: a grid over `lrs` of `[program] command = [python, *args]` maximizing `score`,
    one CPU a job, the test waits; `extra`: more [study] lines."""
    command = ", ".join(f'"{arg}"' for arg in (sys.executable, *args))
    path = folder / f"{name}.toml"
    path.write_text(
        f'[study]\nname = "{name}"\nsampler = "grid"\nmetric = "score"\ndirection = "maximize"\n{extra}'
        f"[train]\nepochs = {epochs}\n[space]\nlr = {lrs}\n"
        f"[resources]\ngpus = 0\ncpus = 1\ntimeout_min = 10\n{TEST_WAITS_TOML}"
        f"[program]\ncommand = [{command}]\n"
    )
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + " }"
    return repr(value)


def write_study(
    path: Path,
    *,
    study: dict[str, Any],
    train: dict[str, Any] | None = None,
    space: dict[str, Any] | None = None,
    points: list[dict[str, Any]] | None = None,
    resources: dict[str, Any] | None = None,
    waits: dict[str, Any] | None = None,
) -> Path:
    """Write a study file; `train` defaults to TINY_TRAIN, `resources` to TINY_RESOURCES, `waits` to
    TEST_WAITS."""
    lines: list[str] = []
    tables = {
        "study": study,
        "train": TINY_TRAIN if train is None else train,
        "space": space or {},
        "resources": TINY_RESOURCES if resources is None else resources,
        "waits": TEST_WAITS if waits is None else waits,
    }
    for name, table in tables.items():
        if table:
            lines.append(f"[{name}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    for point in points or []:
        lines.append("[[points]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in point.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def tiny_smoke(tmp_path: Path) -> Path:
    """The smoke study's grid (2 optimizers x 2 learning rates) on the tiny net and data."""
    return write_study(
        tmp_path / "smoke.toml",
        study={"name": "smoke", "sampler": "grid"},
        space={"optimizer": ["sgd", "adam"], "lr": [0.05, 0.01]},
    )


def instant_job(config: dict[str, Any], run_dir: str) -> None:
    """A trial job that trains nothing: every configured epoch's metrics line at once, val_acc from the lr.

    For tests of the launcher's bookkeeping, which need trials to finish, not networks to learn.
    """
    paths = RunPaths(Path(run_dir))
    history = []
    for epoch in range(1, int(config.get("epochs", 1)) + 1):
        accuracy = min(1.0, float(config.get("lr", 0.1)) * epoch)
        history.append(EpochMetrics(epoch, 1.0 / epoch, accuracy, 1.0 / epoch, accuracy, 0.0, 0.0, 0.0))
    paths.metrics.write_text("".join(record.to_json() + "\n" for record in history))
    paths.result.write_text(TrainResult.from_history(history, parameters=0).to_json())


def sweep_main(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """The sweep CLI run in this process (error paths): its exit status, stdout and stderr."""
    from sweep.cli import main

    return main_in_process(main, capsys, *args)


def sweep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweep", *args]


def run_sweep(*args: str, timeout: float = deadline(120)) -> subprocess.CompletedProcess[str]:
    """Run the sweep CLI as a real subprocess; a hang fails the test after `timeout` seconds."""
    return subprocess.run(sweep_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started in their own session; each session is killed at the end, and so is every
    process that names the test's folder (a local job runs in a session of its own)."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=deadline(10))
    for pid in processes_mentioning(str(tmp_path)):
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def process_start(pid: int) -> str | None:
    """When process `pid` started (/proc's clock ticks since boot), None when gone: a pid the system has
    given to a new process since is not the same process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text` (e.g. a run dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state not in ("Z", "X"):
            pids.append(int(proc.name))
    return pids


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """The CLI's contract for errors a user causes: exit 2 and one `error:` line holding each fragment."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def wait_for(condition: Any, *, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def new_study(spec: StudySpec, results: Path) -> optuna.Study:
    """The study in `results`/sweep.db, made as `sweep launch` makes it (for a Launcher run directly)."""
    url = default_url(results)
    storage = open_storage(url, create=True)
    sampler, pruner = make_sampler(spec), make_pruner(spec)
    return open_study(spec.name, storage, direction=spec.direction, sampler=sampler, pruner=pruner, url=url)


def random_study(name: str, url: str) -> optuna.Study:
    """Study `name` at storage `url` (made if new), opened as a launcher opens it, with a random sampler
    and no pruner: the tests of claims and take-over ask it for trials directly."""
    return open_study(
        name,
        open_storage(url, create=True),
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(),
        pruner=optuna.pruners.NopPruner(),
        url=url,
    )
