"""The `sweep` command: argparse only. Each command's parser and its handler sit side by side; the work is
done by the modules they call, and a user's error is one line and exit 2 (`trainer.errors.run_command`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from sweep import __version__
from sweep.errors import StudyStopped, SweepError, run_command

if TYPE_CHECKING:
    from sweep.study.spec import StudySpec

DEFAULT_RESULTS = Path("results")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see sweep --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sweep", description="Hyperparameter studies of training jobs on SLURM clusters.")
    parser.add_argument("--version", action="version", version=f"sweep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_launch, _add_status, _add_logs, _add_report, _add_dashboard, _add_cancel, _add_sbatch):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    # `sweep launch` says itself what Ctrl-C left running and how to go on: one line, not two. A dry
    # run starts nothing and says nothing of it: the plain line is its one.
    interrupted = "" if args.command == "launch" and not args.dry_run else "interrupted"
    return run_command(lambda: args.handler(args), interrupted=interrupted)


def _command(commands: argparse._SubParsersAction, name: str, *, help: str) -> argparse.ArgumentParser:  # noqa: A002
    """A subcommand whose `sweep NAME --help` starts with the line `sweep --help` shows for it."""
    return commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")


def _add_storage_args(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_RESULTS,
        help="holds sweep.db (the default storage) and runs/<study>/<trial>/ (default: results)",
    )
    command.add_argument(
        "--storage",
        default=os.environ.get("SWEEP_STORAGE") or None,
        help="any SQLAlchemy URL (default: $SWEEP_STORAGE, else sqlite:///RESULTS_DIR/sweep.db)",
    )


def _url(args: argparse.Namespace) -> str:
    """The storage of a command: --storage, else RESULTS_DIR/sweep.db."""
    from sweep import storage

    return storage.url_of(args.storage, args.results_dir)


STUDY_HELP = "a study name (./studies/NAME.toml, else a shipped study) or the path of a .toml file"


# -- launch -----------------------------------------------------------------------------------------------


def _add_launch(commands: argparse._SubParsersAction) -> None:
    from sweep.executors import EXECUTORS

    command = _command(commands, "launch", help="run a study, or continue it where it stopped")
    command.add_argument("--study", required=True, help=STUDY_HELP)
    command.add_argument(
        "--executor", choices=EXECUTORS, default="auto", help="where jobs run (default: auto)"
    )
    command.add_argument(
        "--parallel",
        type=int,
        help="jobs running at once (default: the study's [resources] array_parallelism, else 1)",
    )
    _add_storage_args(command)
    command.add_argument(
        "--dry-run", action="store_true", help="print the trials it would submit; write nothing"
    )
    command.add_argument(
        "--budget-gpu-hours",
        type=float,
        metavar="X",
        help="start no new trial once the study's GPU-hours used plus those its running trials are "
        "expected to use reach X (replaces [study] budget_gpu_hours)",
    )
    command.add_argument(
        "--detach",
        action="store_true",
        help="return at once; the launcher runs on as a SLURM job of its own (slurm executor) or a "
        "background process (output in RESULTS_DIR/NAME.launcher.log)",
    )
    for flag, kind, metavar, what in (
        ("--launcher-partition", str, None, "partition"),
        ("--launcher-time", int, "MIN", "time limit"),
        ("--launcher-mem", float, "GB", "memory"),
    ):
        command.add_argument(
            flag, type=kind, metavar=metavar, help=f"with --detach: the launcher job's {what}"
        )
    command.set_defaults(handler=_launch)


def _launch(args: argparse.Namespace) -> int:
    from sweep.launcher import dry_run, failed_line, launch
    from sweep.launcher.sigterm import EXIT_STATUS, Terminated, sigterm_raises
    from sweep.study.files import load_study

    spec = load_study(args.study)  # a bad study stops here, before any storage is touched
    parallel = args.parallel if args.parallel is not None else spec.resources.array_parallelism or 1
    if parallel < 1:
        raise SweepError(f"--parallel must be 1 or more, got {parallel}")
    if args.dry_run:
        dry_run(spec, storage_url=_url(args), executor=args.executor)
        return 0
    if args.detach:
        return _detach(args, spec, parallel)
    try:
        with sigterm_raises():
            summary = launch(
                spec,
                results_dir=args.results_dir,
                storage_url=args.storage,
                executor=args.executor,
                parallel=parallel,
                budget_gpu_hours=args.budget_gpu_hours,
            )
    except Terminated:  # its line is said
        return EXIT_STATUS
    except StudyStopped as stopped:  # the study's trials failed, not the command: exit 1
        print(f"error: {stopped}", file=sys.stderr)
        return 1
    failed = failed_line(summary)
    if failed is not None:  # a trial failed: a script's `sweep launch && sweep report` stops here
        print(f"error: {failed}", file=sys.stderr)
    return 0 if failed is None else 1


def _detach(args: argparse.Namespace, spec: StudySpec, parallel: int) -> int:
    import dataclasses

    from sweep.launcher import prepare
    from sweep.launcher.detach import detach
    from sweep.study.files import find_study

    study_file = Path(args.study) if args.study.endswith(".toml") else find_study(args.study)
    assert study_file is not None  # load_study found it
    overrides = {
        "partition": args.launcher_partition,
        "time_min": args.launcher_time,
        "mem_gb": args.launcher_mem,
    }
    for flag, value in (("--launcher-time", args.launcher_time), ("--launcher-mem", args.launcher_mem)):
        if value is not None and value <= 0:
            raise SweepError(f"{flag} must be more than 0, got {value}")
    wanted = {key: value for key, value in overrides.items() if value is not None}
    spec = dataclasses.replace(spec, launcher=dataclasses.replace(spec.launcher, **wanted))
    prepared = prepare(
        spec,
        results_dir=args.results_dir,
        storage_url=args.storage,
        executor=args.executor,
        parallel=parallel,
    )
    detach(
        spec,
        study_file,
        prepared,
        results_dir=args.results_dir,
        storage_url=args.storage,
        executor=args.executor,
        parallel=parallel,
        budget_gpu_hours=args.budget_gpu_hours,
    )
    return 0


# -- status -----------------------------------------------------------------------------------------------


def _add_status(commands: argparse._SubParsersAction) -> None:
    command = _command(commands, "status", help="one line per trial of the stored studies, and totals")
    command.add_argument("--study", help="a study name (or its .toml file); default: every stored study")
    command.add_argument("--trial", type=int, help="one trial's details, the whole reason of a failed one")
    every = (
        "a line for every trial (a study of over 50 trials: its counts, running, last failed and best ten)"
    )
    command.add_argument("--all", action="store_true", dest="every_trial", help=every)
    command.add_argument(
        "--watch",
        action="store_true",
        help="follow the study until no trial runs (live view on a terminal; else status when it changes)",
    )
    command.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="S",
        help="with --watch: seconds between reads (default: 2)",
    )
    _add_storage_args(command)
    command.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from sweep.status import show, watch
    from sweep.study.files import study_name

    if args.watch:
        if args.trial is not None:
            raise SweepError("--watch follows a whole study; leave out --trial (or --watch)")
        watch(_url(args), args.study, interval=args.interval)
        return 0
    name = study_name(args.study) if args.study is not None else None
    show(_url(args), name, trial=args.trial, every_trial=args.every_trial)
    return 0


# -- report -----------------------------------------------------------------------------------------------


def _add_report(commands: argparse._SubParsersAction) -> None:
    command = _command(
        commands, "report", help="a study's comparison table (markdown), its plots (HTML) and README block"
    )
    command.add_argument("--study", help="a stored study's name (or its .toml file)")
    command.add_argument(
        "--all",
        action="store_true",
        help="every configuration, those no longer in the study file too; without --study, of every study",
    )
    _add_storage_args(command)
    command.add_argument(
        "--readme", type=Path, help="replace the <!-- sweep:NAME --> block of this file (added if missing)"
    )
    command.add_argument(
        "--format", choices=("md", "csv", "json"), default="md", help="what is printed (default: md)"
    )
    command.add_argument(
        "--out",
        type=Path,
        help="write the files here (default: the results folder, which may then be read-only)",
    )
    command.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from sweep.report import report

    text = report(
        study=args.study,
        all_studies=args.all and args.study is None,
        all_configs=args.all,
        results_dir=args.results_dir,
        storage_url=args.storage,
        readme=args.readme,
        fmt=args.format,
        out_dir=args.out,
    )
    print(text, end="")
    return 0


# -- dashboard --------------------------------------------------------------------------------------------


def _add_dashboard(commands: argparse._SubParsersAction) -> None:
    command = _command(commands, "dashboard", help="serve optuna-dashboard on the study storage")
    _add_storage_args(command)
    command.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback)")
    command.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    command.add_argument(
        "--allow-writes",
        action="store_true",
        help="let the page delete, rename and change studies (default: read-only: it has no authentication)",
    )
    command.set_defaults(handler=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    from sweep.dashboard import serve

    serve(_url(args), host=args.host, port=args.port, allow_writes=args.allow_writes)
    return 0


# -- cancel -----------------------------------------------------------------------------------------------


def _add_cancel(commands: argparse._SubParsersAction) -> None:
    command = _command(
        commands,
        "cancel",
        help="cancel a study's live jobs (scancel, or kill local ones) and mark their trials FAIL",
    )
    command.add_argument("--study", required=True, help="a stored study's name (or its .toml file)")
    _add_storage_args(command)
    command.set_defaults(handler=_cancel)


def _cancel(args: argparse.Namespace) -> int:
    from sweep import storage
    from sweep.cancel import cancel_study
    from sweep.study.files import study_name

    url = _url(args)
    study = storage.read_study(url, study_name(args.study))
    with storage.storage_errors(url):
        cancel_study(study)
    return 0


# -- logs -------------------------------------------------------------------------------------------------


def _add_logs(commands: argparse._SubParsersAction) -> None:
    command = _command(commands, "logs", help="print a trial's job output, or a detached launcher's")
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
    _add_storage_args(command)
    command.set_defaults(handler=_logs)


def _logs(args: argparse.Namespace) -> int:
    from sweep import storage
    from sweep.logs import launcher_logs, trial_logs
    from sweep.study.files import study_name

    url = _url(args)
    study = storage.read_study(url, study_name(args.study), check_schema=False)
    with storage.storage_errors(url):
        if args.launcher:
            launcher_logs(study, follow=args.follow)
        else:
            trial_logs(
                study, args.trial, follow=args.follow, stderr=args.stderr, all_attempts=args.all_attempts
            )
    return 0


# -- sbatch -----------------------------------------------------------------------------------------------


def _add_sbatch(commands: argparse._SubParsersAction) -> None:
    command = _command(
        commands, "sbatch", help="print a trial's job as a plain sbatch script (slurm_templates/train.sbatch)"
    )
    command.add_argument("--study", required=True, help=STUDY_HELP)
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="a stored trial's number")
    which.add_argument("--config", type=int, help="a planned configuration (0-based), before any launch")
    command.add_argument("--repeat", type=int, default=0, help="with --config: the seed offset (default 0)")
    _add_storage_args(command)
    command.set_defaults(handler=_sbatch)


def _sbatch(args: argparse.Namespace) -> int:
    from sweep.sbatch import sbatch_script
    from sweep.study.files import load_study

    script = sbatch_script(
        load_study(args.study),
        results_dir=args.results_dir,
        storage_url=args.storage,
        trial=args.trial,
        config=args.config,
        repeat=args.repeat,
    )
    print(script, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
