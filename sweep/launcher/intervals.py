"""How often a launcher does what it does on its own clock, as one value passed in: the defaults are
production's, and a test that needs a quicker launcher says so where it builds one (no module constant
patched by name)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Intervals:
    """A launcher's own timings, in seconds."""

    scan_s: float = 5.0  # RUNNING trials whose launcher died are looked for this often
    held_retry_s: float = 60.0  # a trial a submission limit holds is tried again at least this often
    stall_min_s: float = 60.0  # the shortest time without a new epoch that makes a trial stalled


DEFAULT_INTERVALS = Intervals()  # production's
