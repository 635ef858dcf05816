"""The project's one user-facing exception, shared with trainer so both parts raise the same type."""

from trainer.errors import SweepError

__all__ = ["SweepError"]
