"""`sweep cancel`: stop every live job of a study and mark its trials FAIL.

Cancelled trials are told FAIL (their record's `traceback` = CANCEL_REASON), not PRUNED: a pruned
trial counts as finished and feeds the pruner's statistics, while a failed planned configuration is
enqueued again by the next `sweep launch`, so a cancelled study can be continued later.

The launcher watching the trials is stopped first (SIGTERM, when it runs on this host), otherwise it
would see its jobs end and submit them again. The cancel then writes to the storage itself, as the
launcher would have.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweep._compat import trial_of
from sweep.commands.args import add_storage_args, subcommand, url
from sweep.detached import stop as stop_detached
from sweep.errors import Printer
from sweep.executors import attach, orphan, slurm_queries
from sweep.polling import wait_until
from sweep.store import records
from sweep.store.owners import Owner, alive
from sweep.store.records import StudyRecord, TrialRecord

CANCEL_REASON = "cancelled by sweep cancel"
LAUNCHER_STOP_S = 15.0  # how long a launcher on this host gets to exit after SIGTERM
SLURM_CANCEL_S = 60.0  # how long the cancelled SLURM jobs get to leave squeue (KillWait is 30 s by default)


def cancel_study(study: optuna.Study, *, out: Printer = print) -> list[int]:
    """Cancel the jobs of `study`'s RUNNING trials (any executor) and tell those trials FAIL.

    Returns:
        The numbers of the cancelled trials.
    """
    detached = StudyRecord.of(study).detached
    if detached is not None:  # first: it would start the cancelled trials again
        stop_detached(detached, out)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    _stop_launchers(running, out)
    jobs = [(trial, TrialRecord.of(trial), _job_id(TrialRecord.of(trial))) for trial in running]
    slurm_ids = [job_id for _, record, job_id in jobs if record.executor == "slurm" and job_id]
    if slurm_ids:
        slurm_queries.scancel(slurm_ids)
    for _, record, job_id in jobs:
        if record.executor == "local" and job_id and record.run_dir is not None:
            attach("local", job_id, record.run_dir).cancel()
    if slurm_ids:
        # one squeue for all the jobs, at most once a second, until they have gone
        wait_until(
            functools.partial(_slurm_gone, slurm_ids), SLURM_CANCEL_S, every_s=slurm_queries.WAIT_QUERY_S
        )
    for trial, record, job_id in jobs:
        live = trial_of(study, trial)
        records.write(live, traceback=CANCEL_REASON, job_id=job_id if job_id != record.job_id else None)
        study.tell(trial.number, state=TrialState.FAIL)
        unrecorded = " (found in its run dir)" if job_id != record.job_id else ""
        job = f"job {job_id or 'none'}{unrecorded} ({record.executor or 'unknown'})"
        out(f"trial {trial.number} cancelled  {job}; marked FAIL")
    out(f"{study.study_name}: {len(running)} running trials cancelled")
    return [trial.number for trial in running]


def _job_id(record: TrialRecord) -> str | None:
    """The trial's job: the one it stored, or a newer live one in its run dir that a launcher started
    and died before storing (as the launcher's reconcile finds it), so that it is cancelled too."""
    if record.run_dir is None or record.executor is None:
        return record.job_id
    return orphan(record.executor, record.run_dir, after=record.job_id) or record.job_id


def _stop_launchers(trials: list[FrozenTrial], out: Printer) -> None:
    """SIGTERM the launchers on this host that watch `trials`; name the ones elsewhere."""
    owners = {TrialRecord.of(t).launcher for t in trials} - {None}
    for text in sorted(owner for owner in owners if owner is not None):
        owner = Owner.parse(text)
        if not owner.here:
            out(f"launcher {text} runs on another host: stop it too, or it resubmits the cancelled trials")
            continue
        if owner.pid is None or owner.is_me or not alive(owner, None):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner.pid, signal.SIGTERM)
        if wait_until(functools.partial(_gone, owner), LAUNCHER_STOP_S):
            out(f"launcher {text} stopped")


def _gone(owner: Owner) -> bool:
    return not alive(owner, None)


def _slurm_gone(job_ids: list[str]) -> bool:
    return not any(state.live for state in slurm_queries.job_states(job_ids).values())


__all__ = ["CANCEL_REASON", "cancel_study"]

# -- the command line ----------------------------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction) -> None:
    command = subcommand(
        commands,
        "cancel",
        help="cancel a study's live jobs (scancel, or kill local ones) and mark their trials FAIL",
    )
    command.add_argument("--study", required=True, help="a stored study's name (or its .toml file)")
    add_storage_args(command)
    command.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sweep.store import storage
    from sweep.study.files import study_name

    where = url(args)
    study = storage.read_study(where, study_name(args.study))
    with storage.storage_errors(where):
        cancel_study(study)
    return 0
