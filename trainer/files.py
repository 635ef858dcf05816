"""Atomic file writes, the project's only ones: a reader (or a resumed run) never sees a half-written file.

torch is imported only by `atomic_torch_save`, so the launcher and `sweep report` write files through
this module without loading it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from trainer.errors import UserError


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a temp file in the same folder, fsync it, then `os.replace` it over `path`.

    An existing file keeps its permission bits; a new one gets the usual 0666 minus the umask.
    """
    path = Path(path)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600 files
        os.replace(tmp, path)  # atomic on POSIX: the old file or the new one, never a mix
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` (text is written as UTF-8) in one step."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    _atomic_write(path, lambda handle: handle.write(payload))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """`torch.save(obj)` to `path` in one step."""
    import torch  # only the trainer saves tensors; everything else here needs no torch

    try:
        _atomic_write(path, lambda handle: torch.save(obj, handle))
    except RuntimeError as err:  # torch's writer hides the OS error: "[enforce fail ...] unexpected pos"
        free = shutil.disk_usage(Path(path).parent).free
        raise UserError(
            f"{path}: cannot write it ({str(err).strip().splitlines()[-1]}); {free // 2**20} MiB are free on "
            "its disk: free some space, and the run resumes from its last checkpoint"
        ) from None


def append_line(path: Path, line: str) -> None:
    """Append one line and flush it to disk, so a poller sees whole lines only."""
    with open(path, "a") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _umask() -> int:
    mask = os.umask(0)  # the only way to read the umask is to set it; put it straight back
    os.umask(mask)
    return mask
