"""The `sweep` command: thin subcommands over the core modules; user errors become one line and exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from sweep import __version__
from trainer.errors import SweepError, os_error_line

if TYPE_CHECKING:
    import optuna

DEFAULT_RESULTS = Path("results")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see sweep --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sweep", description="Hyperparameter studies of training jobs on SLURM clusters.")
    parser.add_argument("--version", action="version", version=f"sweep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_launch(commands)
    _add_status(commands)
    _add_report(commands)
    _add_dashboard(commands)
    _add_cancel(commands)
    _add_sbatch(commands)
    return parser


def _add_storage_args(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_RESULTS,
        help="holds sweep.db (the default storage) and runs/<study>/<trial>/ (default: results)",
    )
    command.add_argument("--storage", help="any SQLAlchemy URL (default: sqlite:///RESULTS_DIR/sweep.db)")


def _add_launch(commands: argparse._SubParsersAction) -> None:
    from sweep.executors import EXECUTORS

    command = commands.add_parser("launch", help="run a study, or continue it where it stopped")
    command.add_argument(
        "--study", required=True, help="a study name in studies/ or the path of a .toml file"
    )
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
    command.set_defaults(handler=_launch)


def _add_status(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("status", help="one line per trial of the stored studies, and totals")
    command.add_argument("--study", help="a study name (or its .toml file); default: every stored study")
    _add_storage_args(command)
    command.set_defaults(handler=_status)


def _launch(args: argparse.Namespace) -> int:
    from sweep.launch import check_same_plan, dry_run, launch
    from sweep.study import load_study

    spec = load_study(args.study)  # a bad study stops here, before any storage is touched
    parallel = args.parallel if args.parallel is not None else spec.resources.array_parallelism or 1
    if parallel < 1:
        raise SweepError(f"--parallel must be 1 or more, got {parallel}")
    if args.dry_run:
        stored = _stored_study(spec.name, args)
        if stored is not None:
            check_same_plan(spec, stored, url=_url(args))
        dry_run(spec, study=stored)
        return 0
    launch(
        spec,
        results_dir=args.results_dir,
        storage_url=args.storage,
        executor=args.executor,
        parallel=parallel,
    )
    return 0


def _url(args: argparse.Namespace) -> str:
    """The storage of a command: --storage, else RESULTS_DIR/sweep.db."""
    from sweep import storage

    return str(args.storage or storage.default_url(args.results_dir))


def _stored_study(name: str, args: argparse.Namespace) -> optuna.Study | None:
    """The study `name` if the storage exists and holds it (read only: a dry run creates nothing)."""
    from sweep import storage

    url = _url(args)
    path = storage.sqlite_path(url)
    if path is not None and not path.is_file():
        return None
    rdb = storage.open_storage(url, create=False)
    with storage.storage_errors(url):
        if name not in storage.study_names(rdb):
            return None
        return storage.load_existing(name, rdb, url=url)


def _status(args: argparse.Namespace) -> int:
    from sweep import storage
    from sweep.executors import with_local_states
    from sweep.slurm import with_slurm_states
    from sweep.status import render, trial_rows
    from sweep.study import study_name

    name = study_name(args.study) if args.study is not None else None
    url = _url(args)
    rdb = storage.open_storage(url, create=False)
    with storage.storage_errors(url):
        names = [name] if name is not None else storage.study_names(rdb)
        for stored in names:
            study = storage.load_existing(stored, rdb, url=url)
            metric = str(study.user_attrs.get("metric", "value"))
            # RUNNING trials checked against SLURM, or the process table for local jobs
            rows = with_local_states(with_slurm_states(trial_rows(study)))
            print("\n".join(render(stored, metric, rows)))
    if not names:
        print(f"no studies in {url}")
    return 0


def _add_report(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "report", help="a study's comparison table (markdown), its plots (HTML) and README block"
    )
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", help="a stored study's name (or its .toml file)")
    which.add_argument("--all", action="store_true", help="every study in the storage")
    _add_storage_args(command)
    command.add_argument(
        "--readme", type=Path, help="replace the <!-- sweep:NAME --> block of this file (added if missing)"
    )
    command.add_argument(
        "--format", choices=("md", "csv", "json"), default="md", help="what is printed (default: md)"
    )
    command.set_defaults(handler=_report)


def _add_dashboard(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("dashboard", help="serve optuna-dashboard on the study storage")
    _add_storage_args(command)
    command.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback)")
    command.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    command.set_defaults(handler=_dashboard)


def _report(args: argparse.Namespace) -> int:
    from sweep.report import report

    text = report(
        study=args.study,
        all_studies=args.all,
        results_dir=args.results_dir,
        storage_url=args.storage,
        readme=args.readme,
        fmt=args.format,
    )
    print(text, end="")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from sweep.dashboard import serve

    serve(_url(args), host=args.host, port=args.port)
    return 0


def _add_cancel(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "cancel", help="cancel a study's live jobs (scancel, or kill local ones) and mark their trials FAIL"
    )
    command.add_argument("--study", required=True, help="a stored study's name (or its .toml file)")
    _add_storage_args(command)
    command.set_defaults(handler=_cancel)


def _cancel(args: argparse.Namespace) -> int:
    from sweep import storage
    from sweep.cancel import cancel_study
    from sweep.study import study_name

    name = study_name(args.study)
    url = _url(args)
    rdb = storage.open_storage(url, create=False)
    with storage.storage_errors(url):
        cancel_study(storage.load_existing(name, rdb, url=url))
    return 0


def _add_sbatch(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "sbatch", help="print a trial's job as a plain sbatch script (slurm_templates/train.sbatch)"
    )
    command.add_argument("--study", required=True, help="a study name in studies/ or a .toml file")
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, help="a stored trial's number")
    which.add_argument("--config", type=int, help="a planned configuration (0-based), before any launch")
    command.add_argument("--repeat", type=int, default=0, help="with --config: the seed offset (default 0)")
    _add_storage_args(command)
    command.set_defaults(handler=_sbatch)


def _sbatch(args: argparse.Namespace) -> int:
    from sweep.sbatch import sbatch_script
    from sweep.study import load_study

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            parser.print_help()
            return 0
        handler = args.handler
        return int(handler(args) or 0)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130  # what a shell reports for a command stopped by SIGINT
    except BrokenPipeError:  # `sweep status | head`: the reader has all it wanted
        # Python would print another error flushing stdout at exit; send what is left nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a command stopped by SIGPIPE
    except OSError as err:  # a path the user gave that cannot be written or read: a full disk, a file
        print(os_error_line(err), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
