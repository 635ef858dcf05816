"""checkpoint.pt as the trainer reads it back: a damaged file is one `error:` line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import deadline
from trainer.checkpoint import load_checkpoint
from trainer.errors import UserError

DAMAGED = [b"\x80\x02.", b"", b"\x80\x02}q\x00", b"PK\x03\x04 truncated zip", b"plain text"]


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_checkpoint_is_a_user_error_naming_the_file(tmp_path: Path, damage: bytes) -> None:
    """Fault: some corrupt checkpoints (`\\x80\\x02.`: IndexError) escaped load_checkpoint's except clause."""
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(damage)
    with pytest.raises(UserError, match="unreadable checkpoint") as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_python_m_trainer_on_a_corrupt_checkpoint_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Fault: `python -m trainer` on a corrupt checkpoint.pt printed an IndexError traceback."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"\x80\x02.")
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "--dataset", "fake", "--depth", "8", "--epochs", "1",
         "--fake-train-size", "96", "--val-size", "32", "--num-workers", "0", "--device", "cpu",
         "--run-dir", str(run_dir)],
        capture_output=True, text=True, timeout=deadline(120), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {run_dir / 'checkpoint.pt'}: unreadable checkpoint")
