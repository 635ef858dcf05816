"""How many of a launch's trials failed, and whether too many in a row stop it ([study] max_failures)."""

from __future__ import annotations

from dataclasses import dataclass

from sweep.errors import StudyStopped


@dataclass
class Failures:
    """The failed trials of one launch: a typo in a study file must not burn a whole grid."""

    study: str
    max_in_row: int  # [study] max_failures
    in_row: int = 0  # trials whose job failed since the last one that completed
    total: int = 0  # trials of this launch whose job failed (`sweep launch` then exits 1)

    def completed(self) -> None:
        self.in_row = 0

    def failed(self, last: str) -> None:
        """Count a trial whose job failed with `last` (its reason's line).

        Raises:
            StudyStopped: `max_in_row` trials failed in a row.
        """
        self.total += 1
        self.in_row += 1
        if self.in_row >= self.max_in_row:
            raise StudyStopped(
                f"{self.study}: {self.in_row} trials failed in a row ([study] max_failures = "
                f"{self.max_in_row}), the last with: {last}. Fix the cause; `sweep launch` again "
                "runs the failed trials again"
            )
