"""The project's one exception type for errors a user can cause and fix."""

from __future__ import annotations


class SweepError(Exception):
    """A problem the user can fix: bad config, unknown optimizer, missing data, unreachable storage.

    The message names the file or key at fault and the fix; command-line entry points print it on one
    line and exit with status 2. `sweep` re-exports this type, so trainer and launcher share it.
    """


def os_error_line(err: OSError) -> str:
    """An OSError from a path the user gave (unwritable, a file where a folder should be, a full disk)
    as the one `error:` line the command-line entry points print."""
    where = f"{err.filename}: " if err.filename else ""
    return f"error: {where}{err.strerror or err}"
