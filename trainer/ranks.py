"""Where a process stands among the ranks of one run, from torchrun's variables (RANK, WORLD_SIZE,
LOCAL_RANK; sweep sets the same for `[resources] tasks_per_node`). Imports nothing heavy (no torch), so
`sweep.log_epoch` uses it too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from trainer.errors import UserError

ENV_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the ranks of one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def writes(self) -> bool:
        """Whether this rank writes the run dir's files (rank 0 only)."""
        return self.rank == 0


SINGLE = Ranks()


def ranks_from_env(environ: Mapping[str, str] | None = None) -> Ranks:
    """RANK, WORLD_SIZE and LOCAL_RANK as torchrun (or sweep) sets them; one rank when WORLD_SIZE is unset.

    Raises:
        UserError: a variable that is not a number, or a rank outside 0..WORLD_SIZE-1.
    """
    env = os.environ if environ is None else environ

    def number(name: str, default: int) -> int:
        text = env.get(name, "").strip()
        if not text:
            return default
        if not (text.isascii() and text.isdigit()):
            raise UserError(f"${name} must be a whole number, got {text!r}")
        return int(text)

    world_size = number("WORLD_SIZE", 1)
    if world_size < 1:
        raise UserError(f"$WORLD_SIZE must be 1 or more, got {world_size}")
    if world_size == 1:
        return SINGLE
    rank = number("RANK", 0)
    if rank >= world_size:
        raise UserError(f"$RANK {rank} is outside 0..{world_size - 1} ($WORLD_SIZE {world_size})")
    return Ranks(rank=rank, world_size=world_size, local_rank=number("LOCAL_RANK", 0))


def check_batch_size(batch_size: int, ranks: Ranks) -> None:
    """The global batch must split evenly over the ranks."""
    if batch_size % ranks.world_size:
        raise UserError(
            f"batch_size {batch_size} does not split over {ranks.world_size} ranks "
            f"($WORLD_SIZE); batch_size is the global batch: use a multiple of {ranks.world_size}"
        )


def is_other_rank(environ: Mapping[str, str] | None = None) -> bool:
    """Whether $RANK names a rank other than 0 (a whole number above 0): a process that must not write
    the run's files. Anything else, unset included, is rank 0."""
    text = (os.environ if environ is None else environ).get("RANK", "").strip()
    return text.isascii() and text.isdigit() and int(text) > 0
