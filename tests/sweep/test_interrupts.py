"""A Ctrl-C or SIGTERM swallowed on its way (raised inside a finalizer, whose exceptions Python only
prints) still stops the launch: the launcher loop raises it again at its next step."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from sweep.launcher import launch
from sweep.launcher.interrupts import Interrupts
from sweep.launcher.sigterm import Terminated, sigterm_raises
from sweep.study import load_study
from tests.sweep.conftest import instant_job, write_study


def _swallowed(signum: int) -> None:
    """The signal lands while something swallows what its handler raises, as a finalizer does."""
    try:
        os.kill(os.getpid(), signum)
        signal.sigtimedwait([], 0)  # lets the handler run here, inside the try
    except (KeyboardInterrupt, Terminated):
        pass


def test_a_swallowed_signal_is_raised_again_at_the_next_check() -> None:
    interrupts = Interrupts()
    with interrupts.watching():
        interrupts.check()  # nothing yet: nothing raised
        _swallowed(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        interrupts.check()  # acted on once
        with sigterm_raises():
            pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def _job_swallowing(signum: int) -> Any:
    def job(config: dict[str, Any], run_dir: str) -> None:
        _swallowed(signum)
        instant_job(config, run_dir)

    return job


@pytest.mark.parametrize(
    ("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)]
)
def test_a_launch_whose_signal_was_swallowed_in_a_job_still_stops(
    tmp_path: Path, signum: int, raised: type[BaseException]
) -> None:
    """Fault: Ctrl-C of a launch on a loaded machine exited 0 in 2 of 4 runs, the trial trained on."""
    study = write_study(
        tmp_path / "sw.toml", study={"name": "sw", "sampler": "grid"}, space={"lr": [0.1, 0.2]}
    )
    lines: list[str] = []
    with sigterm_raises(), pytest.raises(raised):
        launch(
            load_study(study),
            results_dir=tmp_path / "results",
            executor="debug",
            job=_job_swallowing(signum),
            out=lines.append,
        )
    assert not any("submitted" in line and "lr=0.2" in line for line in lines), lines  # stopped at once
