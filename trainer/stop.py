"""`SWEEP_STOP_AFTER_EPOCH`: the epoch after which a run pauses (its checkpoint written, exit status 0),
to be resumed later on the same run dir. The launcher sets it for a trial that must wait at a rung of
synchronous successive halving; the trainer and `sweep.log_epoch` honour it. Imports nothing heavy.
"""

from __future__ import annotations

import os

from trainer.errors import UserError

STOP_AFTER_EPOCH = "SWEEP_STOP_AFTER_EPOCH"


def stop_after_epoch() -> int | None:
    """The epoch $SWEEP_STOP_AFTER_EPOCH names (an integer >= 1), or None when it is unset or empty.

    Raises:
        UserError: the variable is set to anything but a positive integer.
    """
    text = os.environ.get(STOP_AFTER_EPOCH, "").strip()
    if not text:
        return None
    epoch = int(text) if text.isascii() and text.isdigit() else 0
    if epoch < 1:
        raise UserError(f"{STOP_AFTER_EPOCH} must be a positive integer (an epoch), got {text!r}")
    return epoch
