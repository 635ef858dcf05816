"""Writing a report's files as one group: all of them new, or (when one cannot be written) none of them.

A full disk used to leave NAME.md new and NAME.html old or missing, with an error that named no file.
Each file is first written whole beside its target (through the project's atomic writer), and only
once every one is on disk are they renamed over the targets; a rename needs no space.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from sweep.errors import SweepError
from trainer.files import write_atomic

STAGED_SUFFIX = ".sweep-new"  # beside the target, hidden: `.NAME.md.sweep-new`


def write_all(files: list[tuple[Path, str]]) -> None:
    """Replace each path with its text, all or none.

    Raises:
        SweepError: A file could not be written (a full disk, a read-only folder), naming it; every
            target is then as it was before.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, text in files:
            draft = path.with_name(f".{path.name}{STAGED_SUFFIX}")
            staged.append((draft, path))  # before the write: a failed one leaves nothing behind either
            write_atomic(draft, text)
            if path.exists():  # keep the permission bits a user gave the old file
                os.chmod(draft, stat.S_IMODE(path.stat().st_mode))
    except OSError as err:
        for draft, _ in staged:
            with contextlib.suppress(OSError):  # a read-only folder refuses even the removal of nothing
                draft.unlink(missing_ok=True)
        failed = staged[-1][1] if staged else Path(err.filename or "?")
        raise SweepError(
            f"{failed}: cannot write it ({err.strerror or err}); no report file was changed, "
            "the earlier ones are as they were (`sweep report --out DIR` writes them elsewhere)"
        ) from None
    for draft, path in staged:
        os.replace(draft, path)
