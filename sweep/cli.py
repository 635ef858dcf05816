"""The `sweep` command: a thin dispatcher. Each command adds its own sub-parser beside its handler
(`sweep.launcher.command`, `sweep.report.command`, `sweep.commands.*`); a user's error is one line and
exit 2 (`trainer.errors.run_command`).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from sweep import __version__
from sweep.errors import run_command


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see sweep --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from sweep.commands import cancel, dashboard, logs, sbatch, status
    from sweep.launcher import command as launch
    from sweep.report import command as report

    parser = _Parser(prog="sweep", description="Hyperparameter studies of training jobs on SLURM clusters.")
    parser.add_argument("--version", action="version", version=f"sweep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (launch, status, logs, report, dashboard, cancel, sbatch):
        module.add_parser(commands)
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


if __name__ == "__main__":
    sys.exit(main())
