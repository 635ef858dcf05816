"""`SWEEP_RUNG_EPOCHS`: the epochs at which an asynchronous pruner (`successive_halving`, `hyperband`,
`median`) decides whether a trial goes on. After logging one of them, a run waits for the launcher's
word, a file the launcher writes in its run dir (`RunPaths.rung_word`): go on, or stop (the trial was
pruned), instead of training on while the launcher decides. No word within $SWEEP_RUNG_WAIT_S seconds
(default WAIT_S; 0: never wait) and the run goes on, as if told nothing, with one line on stderr: the
launcher may be down. The trainer and `sweep.log_epoch` honour it. Imports nothing heavy.

The variable's value: epochs separated by commas, each `N`, a span `A-B`, or `A-` (epoch A and every
one after it), e.g. `2,6,18` or `5-51`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import UserError
from trainer.paths import RunPaths

RUNG_EPOCHS = "SWEEP_RUNG_EPOCHS"
RUNG_WAIT_S = "SWEEP_RUNG_WAIT_S"
WAIT_S = 300.0  # the longest a run waits for the word at a rung, by default
LOOK_S = 0.01  # how often a waiting run looks for the word (two stat calls): the launcher's word
FAST_S = 5.0  # usually comes within a fraction of a second; after this long, it looks every SLOW_LOOK_S
SLOW_LOOK_S = 0.1


@dataclass(frozen=True)
class RungEpochs:
    """Sets of epochs as $SWEEP_RUNG_EPOCHS writes them: spans (first, last), last None for no end."""

    spans: tuple[tuple[int, int | None], ...]

    def __contains__(self, epoch: object) -> bool:
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            return False
        return any(first <= epoch and (last is None or epoch <= last) for first, last in self.spans)

    def __str__(self) -> str:
        return ",".join(
            str(first) if last == first else f"{first}-{'' if last is None else last}"
            for first, last in self.spans
        )

    @classmethod
    def parse(cls, text: str) -> RungEpochs:
        """`2,6,18`, `5-51` or `5-` as RungEpochs.

        Raises:
            UserError: anything else (an epoch is an integer >= 1; a span's end is not below its start).
        """
        spans: list[tuple[int, int | None]] = []
        for item in text.split(","):
            first, dash, last = item.partition("-")
            start = _epoch(first)
            end = (_epoch(last) if last.strip() else None) if dash else start
            if start is None or (last.strip() and (end is None or end < start)):
                raise UserError(
                    f"{RUNG_EPOCHS} must be epochs separated by commas (e.g. 2,6,18 or 5-51 or 5-), "
                    f"got {text!r}"
                )
            spans.append((start, end))
        return cls(tuple(spans))


def _epoch(text: str) -> int | None:
    """`text` as an epoch (an integer >= 1), else None."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and int(text) >= 1 else None


@dataclass(frozen=True)
class RungContract:
    """What a run was told: the epochs it waits at for the launcher's word, and for how long at most."""

    epochs: RungEpochs
    wait_s: float = WAIT_S

    def go_on(self, run_dir: Path, epoch: int, *, say: Callable[[str], None] | None = None) -> bool:
        """After logging epoch `epoch`: False when the launcher said stop (the trial was pruned), True
        to train on: the word go, an epoch that is no rung, or no word within `wait_s` (then `say`, by
        default stderr, gets one line)."""
        if epoch not in self.epochs or self.wait_s <= 0:
            return True
        paths = RunPaths(run_dir)
        go, stop = paths.rung_word(epoch, go=True), paths.rung_word(epoch, go=False)
        started = time.monotonic()
        deadline = started + self.wait_s
        while True:
            if stop.exists():
                return False
            if go.exists():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                line = (
                    f"sweep: no word from the launcher {self.wait_s:g} s after rung epoch {epoch} "
                    f"({RUNG_WAIT_S}); going on"
                )
                (say or _stderr)(line)
                return True
            time.sleep(min(LOOK_S if time.monotonic() - started < FAST_S else SLOW_LOOK_S, left))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def rung_contract() -> RungContract | None:
    """The contract $SWEEP_RUNG_EPOCHS and $SWEEP_RUNG_WAIT_S tell; None when the first is unset or empty.

    Raises:
        UserError: either variable holds something else than it may.
    """
    text = os.environ.get(RUNG_EPOCHS, "").strip()
    if not text:
        return None
    return RungContract(RungEpochs.parse(text), rung_wait_s())


def rung_wait_s() -> float:
    """$SWEEP_RUNG_WAIT_S (seconds >= 0), WAIT_S when unset or empty.

    Raises:
        UserError: anything but a number of seconds >= 0.
    """
    text = os.environ.get(RUNG_WAIT_S, "").strip()
    if not text:
        return WAIT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise UserError(f"{RUNG_WAIT_S} must be a number of seconds >= 0, got {text!r}")
    return seconds
