"""`sweep logs`: a trial's job output (each attempt's), or a detached launcher's, printed or followed.

A `local` or `slurm` job writes its output where submitit puts it, in the trial's run dir:
`RUN_DIR/submitit/<job id>_0_log.out` (and `.err`), one pair per attempt (a resubmission after a lost
job is a new job id; a SLURM requeue keeps its id and appends). `--follow` prints what is added while
the trial runs, moves on to a new attempt's file when the trial is resubmitted, and ends when the trial
ends. A user's program writes its own output beside its job's, `RUN_DIR/program.N.out` (and `.err`), N
counting its starts: that is what is shown of a program's trial, whatever the executor. A `debug` job of
the built-in trainer runs inside its launcher: its output is the launcher's.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from sweep import detached
from sweep._compat import trial_by_number
from sweep.commands.args import add_storage_args, subcommand, url
from sweep.errors import SweepError
from sweep.executors.files import JobFiles
from sweep.polling import follow as follow_until_ended
from sweep.store.records import StudyRecord, TrialRecord

FOLLOW_EVERY_S = 0.5  # how often a followed file and the trial's state are read
Write = Callable[[str], None]


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@dataclass(frozen=True)
class Attempt:
    """One start of a trial's job: what it is (its job id, or a program's start number), its output."""

    key: str
    label: str  # the line that heads it: "job 4242, submitted 2026-12-02 10:00:00"
    path: Path


def attempts(run_dir: Path, *, stderr: bool = False) -> list[Attempt]:
    """The trial's job starts that left an output file (or are about to), oldest first.

    A user's program writes its own output beside its job's (`program.N.out`, N counting its starts):
    that is what is shown of it. The built-in trainer's is the job's own submitit log.
    """
    files = JobFiles(run_dir)
    programs = files.program_outputs("err" if stderr else "out")
    if programs:
        return [Attempt(str(number), f"program start {number}", path) for number, path in programs]
    found = []
    for job_id, when in files.submitted():
        text = datetime.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")
        paths = files.job(job_id)
        found.append(
            Attempt(job_id, f"job {job_id}, submitted {text}", paths.stderr if stderr else paths.stdout)
        )
    return found


def _header(attempt: Attempt) -> str:
    return f"== {attempt.label} ==\n"


def trial_logs(
    study: optuna.Study,
    number: int,
    *,
    follow: bool = False,
    stderr: bool = False,
    all_attempts: bool = False,
    write: Write = _write,
    follow_every_s: float = FOLLOW_EVERY_S,
) -> None:
    """Print trial `number`'s job output: the latest attempt's, or every attempt's headed by its job id.

    Raises:
        SweepError: No such trial, a trial that never ran a job, or one run by the debug executor.
    """
    trial = _trial(study, number)
    record = TrialRecord.of(trial)
    name = study.study_name
    if record.executor == "debug" and (record.run_dir is None or not attempts(record.run_dir)):
        raise SweepError(
            f"study '{name}' trial {number} ran in its launcher's process (executor debug): its output is "
            "the launcher's; use --executor local for a log per trial"
        )
    if record.run_dir is None:
        raise SweepError(f"study '{name}' trial {number} has not started a job yet; try again when it runs")
    shown: dict[str, int] = {}  # job id -> bytes printed

    def show(attempt: Attempt, *, header: bool) -> None:
        if attempt.key not in shown:
            if header:
                write(_header(attempt))
            shown[attempt.key] = 0
        shown[attempt.key] += _copy_new(attempt.path, shown[attempt.key], write)

    run_dir = record.run_dir

    def step() -> bool:
        ended = not follow or _ended(study, number)  # before the read: it then holds the job's last lines
        found = attempts(run_dir, stderr=stderr)
        if not found and ended:
            raise SweepError(f"study '{name}' trial {number}: no job output in {JobFiles(run_dir).folder}")
        if all_attempts:
            for attempt in found:
                show(attempt, header=True)
        elif found:  # the latest attempt; a follow moves on to a newer one, headed, when it appears
            show(found[-1], header=bool(shown))
        if ended and not follow and not any(attempt.path.exists() for attempt in found):
            write(f"({found[-1].label}: nothing written yet to {found[-1].path})\n")
        return ended

    follow_until_ended(step, every_s=follow_every_s)


def launcher_logs(
    study: optuna.Study,
    *,
    follow: bool = False,
    write: Write = _write,
    follow_every_s: float = FOLLOW_EVERY_S,
) -> None:
    """Print the detached launcher's output; with `follow`, until it ends.

    Raises:
        SweepError: The study was never launched with --detach.
    """
    record = StudyRecord.of(study).detached
    if record is None:
        raise SweepError(
            f"study '{study.study_name}' has no detached launcher; `sweep launch --detach` starts one"
        )
    path, done = Path(record.log), 0

    def step() -> bool:
        nonlocal done
        ended = not follow or detached.alive(record) is False  # before the read, as for a trial
        done += _copy_new(path, done, write)
        if not follow and not path.exists():
            write(f"(no output yet: {path}; {detached.describe(record)})\n")
        return ended

    follow_until_ended(step, every_s=follow_every_s)


def _copy_new(path: Path, offset: int, write: Write) -> int:
    """Write what `path` holds past `offset` (undecodable bytes shown as such); the bytes written."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return 0
    if data:
        write(data.decode(errors="replace"))
    return len(data)


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    # one trial's rows, not the whole study's: a follow asks every poll, and a study may hold 10,000
    trial = trial_by_number(study, number)
    if trial is None:
        count = len(study.get_trials(deepcopy=False))
        raise SweepError(f"study '{study.study_name}' has no trial {number} (trials 0 to {count - 1})")
    return trial


def _ended(study: optuna.Study, number: int) -> bool:
    # Optuna reads an unfinished trial from the storage again: the launcher changes it meanwhile
    return _trial(study, number).state not in (TrialState.RUNNING, TrialState.WAITING)


# -- the command line ----------------------------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction) -> None:
    command = subcommand(commands, "logs", help="print a trial's job output, or a detached launcher's")
    command.add_argument("--study", required=True, help="a stored study's name (or its .toml file)")
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="the trial whose job output to print")
    which.add_argument("--launcher", action="store_true", help="the study's detached launcher's output")
    command.add_argument(
        "--follow", "-f", action="store_true", help="print what is added until the trial (launcher) ends"
    )
    command.add_argument("--stderr", action="store_true", help="the job's stderr instead of its stdout")
    command.add_argument(
        "--all-attempts", action="store_true", help="every attempt's output, each headed by its job id"
    )
    add_storage_args(command)
    command.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sweep.store import storage
    from sweep.study.files import study_name

    where = url(args)
    study = storage.read_study(where, study_name(args.study), check_schema=False)
    with storage.storage_errors(where):
        if args.launcher:
            launcher_logs(study, follow=args.follow)
        else:
            trial_logs(
                study, args.trial, follow=args.follow, stderr=args.stderr, all_attempts=args.all_attempts
            )
    return 0
