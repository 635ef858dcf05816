"""Helpers for tests of real local jobs, which run in sessions of their own and outlive a test that fails."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sweep.conftest import processes_mentioning


def kill_mentioning(text: str) -> None:
    """SIGKILL every live process whose command line contains `text` (a test's tmp_path)."""
    for pid in processes_mentioning(text):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def no_leftovers(tmp_path: Path) -> Iterator[Path]:
    """`tmp_path`; every process still running for it is killed after the test, passed or failed."""
    yield tmp_path
    kill_mentioning(str(tmp_path))
