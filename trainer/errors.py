"""The one exception type for errors a user can cause and fix, and how a command-line entry point shows it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix: bad config, unknown optimizer, missing data, unreachable storage.

    The message names the file or key at fault and the fix; command-line entry points print it on one
    line and exit with status 2. `sweep.errors.UserError` is this same type under the launcher's name.
    """


def os_error_line(err: OSError) -> str:
    """An OSError from a path the user gave (unwritable, a file where a folder should be, a full disk)
    as the one `error:` line the command-line entry points print."""
    where = f"{err.filename}: " if err.filename else ""
    return f"error: {where}{err.strerror or err}"


def run_command(body: Callable[[], int], *, interrupted: str = "interrupted") -> int:
    """Run a command's body and turn what a user can cause into one stderr line and an exit status.

    UserError (one `error:` line per line of its message) and OSError (a path that cannot be read or
    written, a full disk): 2. Ctrl-C: 130 after
    `interrupted` (nothing when empty: the command said it already), as a shell reports SIGINT. A closed
    pipe (`sweep status | head`): 141, quietly.
    """
    try:
        return int(body() or 0)
    except UserError as err:
        for line in str(err).splitlines() or [""]:  # several problems found at once: a line each
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if interrupted:
            print(interrupted, file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader has all it wanted
        # Python would print another error flushing stdout at exit; send what is left nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a command stopped by SIGPIPE
    except OSError as err:
        print(os_error_line(err), file=sys.stderr)
        return 2
