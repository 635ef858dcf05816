"""The project's one atomic writer: whole files only, and the permissions a teammate expects."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trainer.files import atomic_torch_save, write_atomic


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


def test_a_checkpoint_that_does_not_fit_on_the_disk_is_one_error_naming_it(tmp_path: Path) -> None:
    """Fault: a full disk while saving a checkpoint failed the trial with torch's 'unexpected pos 64 vs
    0' and no word of the disk."""
    import pytest
    import torch

    from tests.sweep.mounts import tmpfs
    from trainer.errors import UserError

    with tmpfs(tmp_path / "small", "1m") as small:
        target = small / "checkpoint.pt"
        with pytest.raises(UserError, match=r"checkpoint\.pt: cannot write it .*MiB are free on its disk"):
            atomic_torch_save({"weights": torch.zeros(1_000_000)}, target)  # 4 MB
        assert not target.exists() and not list(small.iterdir())  # no temp file left behind
