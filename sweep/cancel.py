"""`sweep cancel`: stop every live job of a study and mark its trials FAIL.

Cancelled trials are told FAIL (user attribute `traceback` = CANCEL_REASON), not PRUNED: a pruned
trial counts as finished and feeds the pruner's statistics, while a failed planned configuration is
enqueued again by the next `sweep launch`, so a cancelled study can be continued later.

The launcher watching the trials is stopped first (SIGTERM, when it runs on this host), otherwise it
would see its jobs end and submit them again. The cancel then writes to the storage itself, as the
launcher would have.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep import slurm
from sweep.executors import LocalExecutor, wait_gone
from sweep.study import Resources

CANCEL_REASON = "cancelled by sweep cancel"
LAUNCHER_STOP_S = 15.0  # how long a launcher on this host gets to exit after SIGTERM
SLURM_CANCEL_S = 60.0  # how long the cancelled SLURM jobs get to leave squeue (KillWait is 30 s by default)

Printer = Callable[[str], None]


def cancel_study(study: optuna.Study, *, out: Printer = print) -> list[int]:
    """Cancel the jobs of `study`'s RUNNING trials (any executor) and tell those trials FAIL.

    Returns:
        The numbers of the cancelled trials.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    _stop_launchers(running, out)
    with_jobs = [trial for trial in running if "job_id" in trial.user_attrs]
    slurm_ids = [str(trial.user_attrs["job_id"]) for trial in with_jobs if _kind(trial) == "slurm"]
    if slurm_ids:
        slurm.scancel(slurm_ids)
    for trial in running:
        if _kind(trial) == "local" and "job_id" in trial.user_attrs:
            run_dir = Path(trial.user_attrs["run_dir"])
            LocalExecutor(Resources(gpus=0)).attach(str(trial.user_attrs["job_id"]), run_dir).cancel()
    if slurm_ids:
        wait_gone(lambda: any(state.live for state in slurm.job_states(slurm_ids).values()), SLURM_CANCEL_S)
    for trial in running:
        optuna.Trial(study, trial._trial_id).set_user_attr("traceback", CANCEL_REASON)
        study.tell(trial.number, state=TrialState.FAIL)
        job = trial.user_attrs.get("job_id", "none")
        out(f"trial {trial.number} cancelled  job {job} ({_kind(trial)}); marked FAIL")
    out(f"{study.study_name}: {len(running)} running trials cancelled")
    return [trial.number for trial in running]


def _kind(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get("executor", "unknown"))


def _stop_launchers(trials: list[FrozenTrial], out: Printer) -> None:
    """SIGTERM the launchers on this host that watch `trials`; name the ones elsewhere."""
    owners = {str(t.user_attrs["launcher"]) for t in trials if "launcher" in t.user_attrs}
    for owner in sorted(owners):
        host, _, pid_text = owner.rpartition(":")
        if host != socket.gethostname():
            out(f"launcher {owner} runs on another host: stop it too, or it resubmits the cancelled trials")
            continue
        if not pid_text.isdigit() or not _is_launcher(int(pid_text)):
            continue
        pid = int(pid_text)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if wait_gone(functools.partial(_is_launcher, pid), LAUNCHER_STOP_S):
            out(f"launcher {owner} stopped")


def _is_launcher(pid: int) -> bool:
    """Whether `pid` is a live sweep process (not a zombie, not a reused pid of another program)."""
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and b"sweep" in cmdline


__all__ = ["CANCEL_REASON", "cancel_study"]
