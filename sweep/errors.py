"""What a command tells its user: `SweepError`, the trainer's `UserError` under the launcher's name;
`StudyStopped`; `run_command` (the error line and the exit status); `Printer`, where progress lines go.

SweepError is the same type as UserError, so an error the trainer raises inside a debug job or a study
parse (a bad TrainConfig field) is caught, printed and exited on like any of sweep's own.
"""

from collections.abc import Callable, Iterator

from trainer.errors import UserError as SweepError
from trainer.errors import run_command


class StudyStopped(Exception):
    """The launcher stopped a study: too many trials failed in a row. `sweep launch` exits 1 with its line."""


Printer = Callable[[str], None]  # where a command's progress lines go: print_line, a live view, a list


def print_line(line: str) -> None:
    """A progress line on stdout, at once (a detached launcher's log is read while it runs)."""
    print(line, flush=True)


__all__ = ["Printer", "StudyStopped", "SweepError", "last_line", "print_line", "run_command"]


def last_line(error: BaseException | str, empty: str = "no message") -> str:
    """The last line of an error's message, stripped: the line that says what happened (a traceback's
    exception, sbatch's reason after its chatter); `empty` when the message is blank."""
    text = str(error).strip()
    return text.splitlines()[-1].strip() if text else empty


def causes(err: BaseException) -> Iterator[BaseException]:
    """`err`, then every exception it came from (a SQLAlchemy error's driver error `orig`, its cause and
    context, and theirs), each once: where a library's wrapper hides what really happened."""
    seen: set[int] = set()
    chain: list[BaseException | None] = [err]
    while chain:
        current = chain.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        chain += [getattr(current, "orig", None), current.__cause__, current.__context__]
