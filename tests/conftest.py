"""Shared fixtures: small fake CIFAR-10 on disk, tiny CPU configs, one scale for every test deadline."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# One thread per torch process in the tests (the trainers they start, the SLURM jobs, the workers' own
# torch): the suite runs several at once on a machine of two cores, and torch's default of one thread
# per core made each of three concurrent trainers four times slower (35 s against 8 s an epoch).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from trainer.config import TrainConfig
from trainer.data import write_batches
from trainer.fake_data import generate

# pytest keeps its assertion-rewritten test modules only where bytecode may be written: with
# PYTHONDONTWRITEBYTECODE set (as on our machines) each xdist worker rewrote all of them on every run
# (7.8 CPU-s to collect the suite, 4.6 s from the cache). The tests' own processes still follow the setting.
sys.dont_write_bytecode = False

# Every wait and subprocess timeout in the tests is `deadline(seconds)`: on a slow or busy machine,
# SWEEP_TEST_TIMEOUT_SCALE=3 gives each three times as long, without editing a test.
TIMEOUT_SCALE = float(os.environ.get("SWEEP_TEST_TIMEOUT_SCALE", "1") or 1)


# With pytest-xdist (scripts/test.sh) the slow tests are handed out first (a stable sort): a long one
# started last would be the run's tail. The tests share their services as they run side by side (the
# SLURM cluster's 4 CPUs, the PostgreSQL server, chromium, tmux); those that stop a service or change a
# cluster limit are marked `cluster_fault` and run alone, last. (pytest-xdist's `xdist_group` cannot
# keep tests on one worker here: xdist 3.8 marks the group in a node id field pytest 9.2 no longer reads.)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.pluginmanager.hasplugin("xdist"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def deadline(seconds: float) -> float:
    """`seconds` times SWEEP_TEST_TIMEOUT_SCALE (default 1): how long a test waits before it fails."""
    return seconds * TIMEOUT_SCALE


def main_in_process(
    main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """A command's `main` run in this process (its error paths, without a process to start): its exit
    status (argparse's own errors' too), stdout and stderr."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as stop:  # argparse's own errors
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


def tiny_config(**overrides: object) -> TrainConfig:
    """A config that trains in about a second on a CPU: depth 8, a few hundred generated images."""
    fields: dict[str, object] = dict(
        dataset="fake",
        depth=8,
        epochs=1,
        batch_size=32,
        num_workers=0,
        fake_train_size=160,
        fake_test_size=40,
        val_size=32,
        device="cpu",
        lr=0.05,
    )
    fields.update(overrides)
    return TrainConfig(**fields)  # type: ignore[arg-type]


def write_fake_cifar(data_dir: Path, *, seed: int = 1) -> Path:
    """`data_dir` holding a 300/60-image fake CIFAR-10 in the real cifar-10-batches-py layout."""
    train, test = generate(300, 60, seed=seed)
    write_batches(data_dir, train, test)
    return data_dir


@pytest.fixture
def fake_cifar_dir(tmp_path: Path) -> Path:
    """A data dir holding a 300/60-image fake CIFAR-10 in the real cifar-10-batches-py layout."""
    return write_fake_cifar(tmp_path / "data")
