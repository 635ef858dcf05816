"""The one error import of the sweep side: `SweepError`, the trainer's `UserError` under the launcher's name.

It is the same type, so an error the trainer raises inside a debug job or a study parse (a bad
TrainConfig field) is caught, printed and exited on like any of sweep's own.
"""

from trainer.errors import UserError as SweepError
from trainer.errors import run_command


class StudyStopped(Exception):
    """The launcher stopped a study: too many trials failed in a row. `sweep launch` exits 1 with its line."""


__all__ = ["StudyStopped", "SweepError", "run_command"]
