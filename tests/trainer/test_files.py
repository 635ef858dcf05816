"""The project's one atomic writer: whole files only, and the permissions a teammate expects."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trainer.files import write_atomic


def test_a_new_file_follows_the_umask_and_an_existing_one_keeps_its_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new.json", "{}")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644  # readable by the group
        (tmp_path / "kept.json").write_text("old")
        os.chmod(tmp_path / "kept.json", 0o640)
        write_atomic(tmp_path / "kept.json", b"new")
        assert stat.S_IMODE((tmp_path / "kept.json").stat().st_mode) == 0o640
        assert (tmp_path / "kept.json").read_text() == "new"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json", "new.json"]  # no temp file left
    finally:
        os.umask(old)
